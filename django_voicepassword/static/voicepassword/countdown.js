/*
 * django-voicepassword: the resend countdown of the code page.
 *
 * Progressive enhancement. Without this script the page works: the buttons
 * that ask for a new code are enabled, and the server refuses one asked for
 * too early with the time left. With it, they stay disabled until the time
 * the page was given (data-vp-countdown, in seconds) has passed, the time
 * left is shown as m:ss, and a polite live region says when they are ready.
 */
(function () {
  "use strict";

  function clock(seconds) {
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function start(form) {
    var wait = form.querySelector("[data-vp-countdown]");
    var seconds = wait ? parseInt(wait.getAttribute("data-vp-countdown"), 10) : 0;
    if (!(seconds > 0)) {
      return;
    }
    var shown = wait.querySelector("[data-vp-clock]");
    var ready = form.querySelector("[data-vp-ready]");
    var buttons = form.querySelectorAll("button[name=resend]");
    // A deadline, not a count of ticks: timers of background tabs are slowed.
    var deadline = Date.now() + seconds * 1000;
    var timer = null;

    function enable(on) {
      for (var i = 0; i < buttons.length; i += 1) {
        buttons[i].disabled = !on;
      }
    }

    function tick() {
      var left = Math.ceil((deadline - Date.now()) / 1000);
      if (left > 0) {
        if (shown) {
          shown.textContent = clock(left);
        }
        return;
      }
      window.clearInterval(timer);
      wait.hidden = true;
      enable(true);
      if (ready) {
        ready.textContent = ready.getAttribute("data-vp-ready");
      }
    }

    enable(false);
    timer = window.setInterval(tick, 250);
    tick();
  }

  var forms = document.querySelectorAll("form[data-vp-resend]");
  for (var i = 0; i < forms.length; i += 1) {
    start(forms[i]);
  }
})();

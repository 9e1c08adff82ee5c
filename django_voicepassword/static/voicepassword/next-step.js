/*
 * django-voicepassword: the workflow's next step on the code page.
 *
 * Progressive enhancement. The server takes a workflow's next step (a voice
 * call after a flash call that did not come) on a worker, or when the code
 * page is asked for again. This script asks for it again once the step is
 * due (data-vp-next-step, in seconds), so that the page says how the new code
 * comes; without it, the person reloads, and nothing is lost. Nothing is
 * reloaded while the person is typing a code.
 */
(function () {
  "use strict";

  var line = document.querySelector("[data-vp-next-step]");
  if (!line) {
    return;
  }
  var seconds = parseInt(line.getAttribute("data-vp-next-step"), 10);
  if (!(seconds >= 0)) {
    return;
  }
  // A deadline, not a count of ticks: timers of background tabs are slowed.
  var deadline = Date.now() + (seconds + 1) * 1000;
  var timer = window.setInterval(function () {
    var input = document.querySelector("input[name=code]");
    if (Date.now() < deadline || (input && input.value)) {
      return;
    }
    window.clearInterval(timer);
    window.location.replace(window.location.pathname + window.location.search);
  }, 500);
})();

"""What binds a challenge to the client that started it: a cookie of its own, or the session.

A challenge stores the HMAC of what bound it (``Challenge.session_digest``),
never the thing itself: a database reader must not be able to confirm the
challenges of people who are logging in, nor take over their sessions.

Two things can bind:

- **the binding cookie** (:data:`COOKIE`): a random token. The login API
  asks for it (:func:`bind_by_cookie`) and sets it on its answer
  (:func:`set_cookie`) when the client has no session yet, so that a start
  writes no session: with database sessions that is a transaction of its
  own, and then a session to load at the confirm and to delete when the
  login cycles the key;
- **the session key**, for every other caller (the HTML flow keeps its own
  state in the session anyway), and for a client that already has a session.

A client's challenges are its own whichever bound them (:func:`holds` asks
both): a challenge started in a session before the client had the cookie is
still found. The same identity is the ``session`` scope of the limits
(:func:`identity`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import TYPE_CHECKING, Final

from django.conf import settings as django_settings
from django.utils.crypto import salted_hmac

if TYPE_CHECKING:
    from django.contrib.sessions.backends.base import SessionBase
    from django.http import HttpRequest, HttpResponseBase

#: The name of the binding cookie.
COOKIE: Final = "voicepassword_binding"

# The salts of the keys derived from SECRET_KEY: one per use, so that an HMAC
# made for one purpose is never valid for another.
_SESSION_SALT: Final = "django_voicepassword.verification.session"
_COOKIE_SALT: Final = "django_voicepassword.verification.binding"
# Written into a new session so that SessionMiddleware sends its cookie: an
# empty session is never saved, and the binding would then bind nothing.
_SESSION_MARK: Final = "_voicepassword"
# What a token looks like (secrets.token_urlsafe(32)); anything else in the
# cookie is no token, and a start gives the client a new one.
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
# Request attributes: the view sets the cookie; the token given to this request.
_BY_COOKIE: Final = "_voicepassword_binds_by_cookie"
_NEW_TOKEN: Final = "_voicepassword_new_binding"  # noqa: S105 (a name, not a secret)


def bind_by_cookie(request: HttpRequest) -> None:
    """Let a start bind ``request`` with the binding cookie rather than a new session.

    For a view that then calls :func:`set_cookie` on its answer. A client
    that has a session key or the cookie already keeps what it has; a
    request without sessions at all (no ``SessionMiddleware``) stays unbound.
    """
    setattr(request, _BY_COOKIE, True)


def set_cookie(request: HttpRequest, response: HttpResponseBase) -> None:
    """Set the binding cookie on ``response`` if ``request`` was given a token.

    With the session cookie's attributes (``SESSION_COOKIE_SECURE``,
    ``_SAMESITE``, ``_DOMAIN``, ``_PATH``), always ``HttpOnly``, and no expiry:
    it lives as long as the browser's session, longer than any challenge.
    """
    token: str | None = getattr(request, _NEW_TOKEN, None)
    if token is None:
        return
    response.set_cookie(
        COOKIE,
        token,
        domain=django_settings.SESSION_COOKIE_DOMAIN,
        path=django_settings.SESSION_COOKIE_PATH,
        secure=django_settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite=django_settings.SESSION_COOKIE_SAMESITE,
    )


def _token(request: HttpRequest) -> str | None:
    """The binding cookie's token of ``request`` (or the one it was just given), if any."""
    token: str | None = getattr(request, _NEW_TOKEN, None)
    if token is not None:
        return token
    value = request.COOKIES.get(COOKIE)
    return value if value is not None and _TOKEN.fullmatch(value) else None


def identity(request: HttpRequest) -> str | None:
    """What binds ``request`` now, creating nothing: its token, else its session key."""
    token = _token(request)
    if token is not None:
        return "binding:" + token
    session = getattr(request, "session", None)
    return None if session is None else session.session_key


def _cookie_digest(token: str) -> str:
    return salted_hmac(_COOKIE_SALT, token, algorithm="sha256").hexdigest()


def _session_digest(key: str) -> str:
    return salted_hmac(_SESSION_SALT, key, algorithm="sha256").hexdigest()


def digest(request: HttpRequest | None, *, create: bool) -> str:
    """The HMAC that binds the challenges ``request`` starts; ``""`` when nothing does.

    The token's when the request has one, else the session key's. With
    ``create`` a request with neither gets one: a token where the view asked
    for it (:func:`bind_by_cookie`), else a session key (the session is saved
    now, and SessionMiddleware sends its cookie): the challenge it starts is
    then bound from the first answer on. A request without sessions at all
    (no ``SessionMiddleware``: an API for native apps) gives ``""``: its
    challenges are bound to nothing, and their random id alone finds them.
    """
    if request is None:
        return ""
    session: SessionBase | None = getattr(request, "session", None)
    if session is None:
        return ""
    token = _token(request)
    by_cookie = getattr(request, _BY_COOKIE, False)
    if token is None and create and by_cookie and session.session_key is None:
        token = secrets.token_urlsafe(32)
        setattr(request, _NEW_TOKEN, token)
    if token is not None:
        return _cookie_digest(token)
    key = session.session_key
    if key is None:
        if not create:
            return ""
        session[_SESSION_MARK] = True
        save_session_once(session)
        key = session.session_key
        if key is None:  # signed-cookie sessions have no key
            return ""
    return _session_digest(key)


def holds(bound: str, request: HttpRequest | None) -> bool:
    """Whether ``request`` may use a challenge whose binding digest is ``bound``.

    ``bound`` empty (a challenge bound to nothing): yes. Otherwise the
    request's token's or session key's digest must be it.
    """
    if not bound:
        return True
    # compare_digest: the time taken must not tell how much of a guessed
    # digest was right (it is an HMAC, but keep the habit). Each of them.
    matches = [hmac.compare_digest(candidate, bound) for candidate in digests(request)]
    return any(matches)


def digests(request: HttpRequest | None) -> list[str]:
    """The binding digests ``request`` holds, creating nothing: its token's, its session key's."""
    if request is None:
        return []
    found = []
    token = _token(request)
    if token is not None:
        found.append(_cookie_digest(token))
    session = getattr(request, "session", None)
    if session is not None and session.session_key is not None:
        found.append(_session_digest(session.session_key))
    return found


def save_session_once(session: SessionBase) -> None:
    """Save ``session`` now, and make the next save of the same data do nothing.

    For a session that must be stored before the response (its key binds a
    challenge; a login must commit with its code): ``SessionMiddleware``
    saves a modified session again after the view, which writes the same
    data a second time (with database sessions a transaction of three
    statements). The session stays modified, so the middleware still sends
    its cookie; its save writes only if the key or the data changed since.
    """
    session.save()
    key, data = session.session_key, dict(session.items())

    def save(must_create: bool = False) -> None:
        if must_create or session.session_key != key or dict(session.items()) != data:
            # Looked up at each call: the store's class, not a copy of its method.
            type(session).save(session, must_create=must_create)

    session.save = save  # type: ignore[method-assign]

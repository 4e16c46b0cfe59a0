"""The session state machine of the FTP exercise: who may say what, and when.

Both ends run the same machine. The client advances it with what it sends and receives, the
server with what it receives and sends, so they always agree on where the session is:

    CONNECTED ──login/331──► AUTHENTICATING ──auth/230──► READY ──put/350──► UPLOADING
        ▲                          │                       │  ▲                  │
        └────────auth/530──────────┘                       │  └──data or abort───┘
                                                           │  ▲   (any final reply)
                                                           └──┼──get/150──► DOWNLOADING
                                                              └────226/426/451────┘
    any state ──quit/221 or any 421──► CLOSED

Protocol 2 adds one *follow-up*: an upload announced with ``"trailer": true`` sends ``data`` +
body, then ``trailer`` {digest}, and only then reads the reply. The trailer belongs to the data
request still pending (FOLLOW_UPS), so it is allowed while that request waits for its reply.

UPLOADING and DOWNLOADING are the "transferring" states. An op that is not allowed in the
current state is refused with 530 (not logged in yet) or 503 (bad sequence), and the state does
not move: the seed's client could send a put's header when the server expected a command (and
the other way round), after which every byte was misread. Here such a message is refused, whole.

Like h11's _state.py, this file knows nothing of sockets or bytes.
"""
from __future__ import annotations

import enum


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    CONNECTED = "connected"            # greeted; nobody logged in yet
    AUTHENTICATING = "authenticating"  # the challenge (331) is out; waiting for the proof
    READY = "ready"                    # logged in: any command
    UPLOADING = "uploading"            # put accepted (350): only data, abort or quit
    DOWNLOADING = "downloading"        # get accepted (150): the file and a 226 are on their way
    CLOSED = "closed"


ANYTIME = {"help", "noop", "quit"}
COMMANDS_WHEN_READY = {"pwd", "cd", "ls", "mkdir", "rm", "quota", "put", "get"} | ANYTIME

#: Which ops a client may send in each state.
ALLOWED: dict[State, set[str]] = {
    State.CONNECTED: {"login"} | ANYTIME,
    State.AUTHENTICATING: {"login", "auth"} | ANYTIME,
    State.READY: COMMANDS_WHEN_READY,
    State.UPLOADING: {"data", "abort", "quit"},
    State.DOWNLOADING: set(),          # wait for the 226 first
    State.CLOSED: set(),
}

#: (pending op, reply code) -> next state, tried in this order: exact code, then the code's class
#: (2, 3, 4, 5 for 2xx..5xx), then "*" for any final reply. Missing = the state does not change.
TRANSITIONS: dict[tuple[str, int | str], State] = {
    ("login", 331): State.AUTHENTICATING,
    ("login", "*"): State.CONNECTED,
    ("auth", 230): State.READY,
    ("auth", "*"): State.CONNECTED,
    ("put", 350): State.UPLOADING,
    ("put", "*"): State.READY,
    ("data", "*"): State.READY,
    ("trailer", "*"): State.READY,
    ("abort", "*"): State.READY,
    ("get", 150): State.DOWNLOADING,
    ("get", "*"): State.READY,
    ("quit", 221): State.CLOSED,
}

#: Ops that may be sent while another op is still waiting for its final reply, because they are
#: part of that request: the trailer (the file's digest) right after a data body. The final
#: reply then answers both.
FOLLOW_UPS: dict[str, set[str]] = {"data": {"trailer"}}

NOT_LOGGED_IN, BAD_SEQUENCE, SERVICE_UNAVAILABLE = 530, 503, 421


class SequenceError(Exception):
    """An op sent in a state that does not allow it. ``code`` is the reply it earns."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg = code, msg


class SessionState:
    """Where one session is. ``on_request`` before a request goes out or is handled,
    ``on_reply`` for every reply (preliminary 1xx replies keep the request pending)."""

    def __init__(self, role: Role = Role.SERVER) -> None:
        self.role = role
        self.state = State.CONNECTED
        self.pending: str | None = None      # the op waiting for its final reply
        self.history: list[tuple[str, State]] = []   # (event, new state), for teaching output

    def allowed(self) -> set[str]:
        return set(ALLOWED[self.state])

    def on_request(self, op: str) -> None:
        if self.state is State.CLOSED:
            raise SequenceError(BAD_SEQUENCE, "the session is closed")
        if self.pending is not None:
            if op in FOLLOW_UPS.get(self.pending, ()):
                self.pending = op
                return
            raise SequenceError(BAD_SEQUENCE, f"still waiting for the reply to {self.pending!r}")
        if op not in ALLOWED[self.state]:
            raise SequenceError(*self._refusal(op))
        self.pending = op

    def on_reply(self, code: int) -> None:
        if code == SERVICE_UNAVAILABLE:
            self._move(f"{code}", State.CLOSED)
            self.pending = None
            return
        if 100 <= code < 200:            # preliminary: the request stays pending
            key = (self.pending or "", code)
            if key in TRANSITIONS:
                self._move(f"{self.pending}/{code}", TRANSITIONS[key])
            return
        op, self.pending = self.pending, None
        if op is None:                   # the reply to a refused or unparsable message
            return
        for key in ((op, code), (op, code // 100), (op, "*")):
            if key in TRANSITIONS:
                self._move(f"{op}/{code}", TRANSITIONS[key])
                return

    def _move(self, event: str, new: State) -> None:
        self.state = new
        self.history.append((event, new))

    def _refusal(self, op: str) -> tuple[int, str]:
        if self.state in (State.CONNECTED, State.AUTHENTICATING) and op in COMMANDS_WHEN_READY:
            return NOT_LOGGED_IN, f"log in first ({op!r} needs a logged-in session)"
        if self.state is State.UPLOADING:
            return BAD_SEQUENCE, f"an upload is pending: send 'data' or 'abort' before {op!r}"
        if op == "auth":
            return BAD_SEQUENCE, "send 'login' first; 'auth' answers its challenge"
        if op == "trailer":
            return BAD_SEQUENCE, ("'trailer' only follows the body of a 'data' whose put announced "
                                  "\"trailer\": true (protocol 2)")
        if op in ("data", "abort"):
            return BAD_SEQUENCE, f"{op!r} only follows a 350 reply to 'put'"
        if op == "login":
            return BAD_SEQUENCE, "already logged in"
        return BAD_SEQUENCE, f"{op!r} is not allowed while {self.state.value}"

    def __repr__(self) -> str:
        return f"<SessionState {self.state.value} pending={self.pending!r}>"

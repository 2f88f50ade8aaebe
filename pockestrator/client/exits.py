"""The CLI's exit codes: distinct for what a script may want to handle differently.

====  ===========  ==========================================================================
code  name         when
====  ===========  ==========================================================================
0     ok           it worked
1     failed       anything else that went wrong (a conflict, a failed operation, unhealthy)
2     usage        the command line is wrong (argparse's own code)
3     invalid      the agent refused the request's content (400, 413, 415, 422)
4     not found    the service, token, backup... does not exist (404)
5     unreachable  no agent answered at the URL (connection refused, timeout, not an agent)
6     refused      the agent refused the caller (401: no or a bad token; 403; 412 stale)
130   interrupted  Ctrl-C (``logs -f`` ends with 0: that is how a follow ends)
====  ===========  ==========================================================================

``exit_code`` maps the client's exceptions to these; docs/cli.md has the same table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser imports these codes; the HTTP client loads only for requests
    from pockestrator.client.http import ClientError

OK = 0
FAILED = 1
USAGE = 2
INVALID = 3
NOT_FOUND = 4
UNREACHABLE = 5
REFUSED = 6
INTERRUPTED = 130

_BY_STATUS = {
    400: INVALID,
    413: INVALID,
    415: INVALID,
    422: INVALID,
    404: NOT_FOUND,
    401: REFUSED,
    403: REFUSED,
    412: REFUSED,
}


def exit_code(error: ClientError) -> int:
    """The exit code of a command that ended with ``error``."""
    from pockestrator.client.http import AgentUnreachable, ApiError, BadAnswer, NotFoundHere

    if isinstance(error, AgentUnreachable | BadAnswer):
        return UNREACHABLE
    if isinstance(error, ApiError):
        return _BY_STATUS.get(error.status, FAILED)
    if isinstance(error, NotFoundHere):
        return NOT_FOUND
    return FAILED

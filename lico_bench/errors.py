"""The one error type a user sees.

Every bad input raises :class:`UserError` with a one-line message that says what is wrong
and what to do. The CLI turns it into ``lico-bench: error: <message>`` and exit status 2,
without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input (name, path, option, file). Exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: a multi-line message would read like a traceback.
        super().__init__(" ".join(str(message).split()))


def os_error_message(e: OSError) -> str:
    """One line for an ``OSError`` a user can cause (disk full, no permission, a file where
    a folder should be): the path, what the system said, and the fix. Writes are atomic
    (lico_bench.io), so whatever was being written is simply not there: nothing is left
    half-written, and finished work (parts, rows, epochs) is kept."""
    import errno

    path = e.filename if e.filename is not None else "a file"
    if e.filename2 is not None:
        path = f"{e.filename} -> {e.filename2}"
    said = e.strerror or type(e).__name__
    fix = {
        errno.ENOSPC: "free some space there or point --out/--runs elsewhere, then run the same "
                      "command again; finished work is kept and nothing was left half-written",
        errno.EDQUOT: "free some of your quota or point --out/--runs elsewhere, then run the same "
                      "command again; finished work is kept and nothing was left half-written",
        errno.EACCES: "make it readable/writable for you or choose another path",
        errno.EPERM: "make it readable/writable for you or choose another path",
        errno.EROFS: "the filesystem is read-only; choose a path on a writable one",
        errno.EEXIST: "a file is in the way where a folder is needed; remove it or choose "
                      "another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; remove it or choose "
                       "another path",
        errno.EISDIR: "a folder is in the way where a file is needed; choose another path",
        errno.ENOENT: "check the path",
        errno.ENAMETOOLONG: "use a shorter path",
    }.get(e.errno, "check the path and the filesystem, then run the same command again")
    return " ".join(f"{path}: {said}; {fix}.".split())

"""Run a click command under the one error table: the CLI's `main`, and `python -m tracekeeper.sync`.

Its own module so that a command module with a `__main__` (cli/sync.py, for the pre-push hook)
can use it without importing the whole CLI group. The only place (with entry.py and hookcmd.py)
that decides an exit status: commands return or raise.
"""

from __future__ import annotations

import click

#: Set by --traceback while parsing; read by `main` when an error reaches it.
STATE: dict[str, bool] = {"traceback": False}


def _debug() -> bool:
    import os

    return STATE["traceback"] or os.environ.get("TRACEKEEPER_DEBUG", "") not in ("", "0")


def run(command: click.Command, args: list[str], prog_name: str) -> int:
    """Run a click command (the CLI, or `python -m tracekeeper.sync`) under the error table."""
    import sys
    import warnings

    from ..errors import ClientWarning

    def show(message: Warning | str, category: type[Warning], *_args: object, **_kwargs: object) -> None:
        if issubclass(category, ClientWarning):
            from ..safetext import visible

            sys.stderr.write(f"warning: {visible(str(message))}\n")
        else:
            original(message, category, *_args, **_kwargs)  # type: ignore[arg-type]

    if not _debug():
        # huggingface_hub logs every retry of its `http_backoff` as a warning ("'[Errno 111]
        # Connection refused' thrown while requesting ... Retrying in 8s"): its internals, not
        # news for a person waiting; the error that ends the command says what failed. The
        # library reads this at import (huggingface_hub/utils/logging.py); the daemon logs its own.
        import os

        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    # Library code says "this did not stop us, but..." with warnings.warn(ClientWarning): one line.
    original = warnings.showwarning
    warnings.showwarning = show
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            return 130
        sys.stderr.write("Error: aborted\n")
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`tracekeeper log | head`): nothing to tell it, and Python must
        # not complain again while flushing stdout at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        from .. import errors_table

        if _debug():
            import traceback

            traceback.print_exception(exc)
        return errors_table.report(exc)
    finally:
        warnings.showwarning = original
    return result if isinstance(result, int) else 0

"""runc-ckpt's Python entry point: a thin main that dispatches on the subcommand.

The sh front end (plugin/bin/runc-ckpt) already exec'd the real runc for the
common pass-through calls; what reaches Python is runc-ckpt's own commands,
--version, and the rarer shapes the front end leaves to us (e.g. --config or
`--`). Command modules are imported only when chosen, so pass-through from
here stays free of heavy imports.
"""

from __future__ import annotations

import importlib
import os
import sys

from runc_ckpt.base import configfile, gcpause, globalflags, realrunc, runclog, signals
from runc_ckpt.base.errors import PassToRunc, RuncCkptError

# Subcommands runc-ckpt handles itself, by module under runc_ckpt.commands.
COMMANDS = {
    "checkpoint": "checkpoint",
    "restore": "restore",
    "inspect": "inspect",
    "image": "image",
    "key": "key",
}


def main(argv: list[str] | None = None) -> int:
    """Run one runc-ckpt call; returns its exit code (pass-through never returns)."""
    inv = globalflags.parse(sys.argv[1:] if argv is None else argv)
    try:
        if _wants_version(inv):
            # Imported when chosen, as every command: pass-through loads only base/ (test_layering).
            return importlib.import_module("runc_ckpt.commands.version").run(inv)
        module_name = COMMANDS.get(inv.command or "")
        if module_name is None:
            return _pass_through(inv)
        if module_name == "restore" and _imports_a_file(inv.args):
            # Imported here, not at the top: restore --import FILE only. Its pre-flight's CRIU image reader
            # is forked before the command's own imports (~7 ms earlier): on a quiet host the restore waits
            # for the reader's pycriu import, not for its own stack (runtime.criu.imagereader).
            from runc_ckpt.runtime.criu import imagereader
            imagereader.start()
        # Imported when chosen: pass-through loads only base/ and the stdlib (tests/unit/test_layering.py).
        with gcpause.loading():
            module = importlib.import_module(f"runc_ckpt.commands.{module_name}")
        try:
            return module.run(inv)
        except PassToRunc:
            return _pass_through(inv)
    except RuncCkptError as e:
        return runclog.fatal(inv.flags, str(e), e.exit_code)
    except KeyboardInterrupt:
        return runclog.fatal(inv.flags, "interrupted", 130)
    except signals.Interrupted as e:     # a flow's deferral should have reported it; never a traceback
        return runclog.fatal(inv.flags, f"interrupted by {e.signame}", 128 + e.signum)
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001  # never a traceback: one runc-format line
        return runclog.fatal(inv.flags, f"internal error: {type(e).__name__}: {e}")


def entry() -> None:
    """The console script (runc-ckpt-py) and `python -m runc_ckpt`: main(), stdio flushed, then os._exit.

    The interpreter's normal exit tears down every module a call loaded: ~10 ms of a tiny checkpoint's
    ~0.1 s of our own time (best of 15, `import` of the flow and the writer, then exit or os._exit). Nothing
    of ours needs the teardown: every thread is a daemon, no atexit handler is registered (ours or our
    dependencies': test_cli_entry checks), files are closed by their with-blocks, and the log, the streams and
    the archives are written unbuffered. A flush that fails leaves the exit to the interpreter, as before.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


def _imports_a_file(args: list[str]) -> bool:
    """Whether restore's argv names an archive file (-i/--import FILE, not the stream `-`); a guess made
    before its flags are parsed: commands.restore ends the reader at once if the call is anything else."""
    for i, arg in enumerate(args):
        if arg == "--":
            return False
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in ("i", "import"):
            if not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
            return value not in ("", "-")
    return False


def _wants_version(inv: globalflags.Invocation) -> bool:
    """runc (urfave/cli) prints its version for -v/--version whatever follows,
    unless -h/--help is also given or the global flags did not parse."""
    parsed = inv.command is not None or not inv.args
    return inv.flags.version and not inv.flags.help and parsed


def _pass_through(inv: globalflags.Invocation) -> int:
    realrunc.exec_runc(realrunc.find(_configured_runc(inv)), inv.runc_argv())
    return 1  # not reached: exec_runc replaces the process or raises


def _configured_runc(inv: globalflags.Invocation) -> str | None:
    """The config file's `runc` key, read as the sh front end does.

    --config is always read (and must exist). Otherwise $RUNC_CKPT_RUNC wins
    without a look at any file; then a file named by $RUNC_CKPT_CONFIG must
    exist, and the default one is read only if it is there. A plain
    `runc: /path` line is read without YAML; anything else loads (and
    validates) the whole file.
    """
    if inv.flags.config is None:
        if os.environ.get(realrunc.ENV_VAR):
            return None
        if not os.environ.get(configfile.ENV_VAR) and not os.path.exists(configfile.DEFAULT_PATH):
            return None
    plain = configfile.plain_runc_key(configfile.config_path(inv.flags.config))
    if plain is not None:
        return plain
    # Imported here, not at the top: YAML and the schema check load only for a config file sh could not read
    # (test_layering: pass-through with a plain `runc:` line loads no settings/).
    from runc_ckpt.settings import config
    return config.load(inv.flags.config).runc

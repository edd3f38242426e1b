"""The `sit-onnx` command: a click group, one thin module per subcommand."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import click

from sit_onnx import __version__
from sit_onnx.errors import SitOnnxError, first_line


class SitGroup(click.Group):
    """Turns user mistakes into one line and exit 1; never a traceback unless SIT_ONNX_DEBUG is set."""

    def invoke(self, ctx):
        from sit_onnx.runtime.op_libraries import given_libraries

        with _quiet_libraries(), given_libraries(()):  # --op-library holds for this invocation only
            return self._invoke_in_one_line(ctx)

    def _invoke_in_one_line(self, ctx):
        try:
            return super().invoke(ctx)
        except SitOnnxError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except MemoryError:
            raise click.ClickException("out of memory") from None
        except BrokenPipeError:  # the reader left early (`| head`): nothing is wrong, nothing to say
            raise click.exceptions.Exit(1) from None
        except Exception as exc:
            if os.environ.get("SIT_ONNX_DEBUG"):
                raise
            if isinstance(exc, OSError) and exc.filename is not None:
                # a path the system refuses wherever it is touched first (a name too long, a folder
                # not searchable): the path and the system's reason, as the commands' own checks say it
                raise click.ClickException(f"{exc.filename}: {_system_reason(exc)}") from None
            raise click.ClickException(  # a bug: still one line, with how to see more
                f"internal error: {type(exc).__name__}: {first_line(exc)} (set SIT_ONNX_DEBUG=1 for a traceback)"
            ) from None


def _system_reason(exc: OSError) -> str:
    """The system's words for an OSError: its strerror, else its own message's first line (str()
    of one given a file name but no errno reads "[Errno None] None: 'path'")."""
    if exc.strerror:
        return exc.strerror
    message = str(exc.args[0]).strip() if exc.args else ""
    return message.splitlines()[0] if message else type(exc).__name__


@contextmanager
def _quiet_libraries():
    """What other libraries print is not ours to show: onnx-graphsurgeon's [W] lines (a missing
    'colored' module, types numpy lacks) and numpy's RuntimeWarnings on NaN/inf data. Our own
    messages are the one line on stderr. Restored afterwards: a program calling `main` keeps its
    own settings."""
    import warnings

    import numpy as np
    from onnx_graphsurgeon.logger import G_LOGGER

    severity = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            yield
    finally:
        G_LOGGER.severity = severity


@click.group(cls=SitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sit-onnx")
def main():
    """Convert Transformers in ONNX to spiking networks (SIT-conversion) and run them."""


def _register():
    from sit_onnx.cli import calibrate, compare, demo, energy, eval_command, genai, layers, neuron, rewrite, run, triton

    for command in (
        neuron.neuron,
        rewrite.rewrite,
        run.run,
        compare.compare,
        eval_command.eval_command,
        layers.layers,
        calibrate.calibrate,
        energy.energy,
        demo.demo,
        triton.triton,
        genai.genai,
    ):
        main.add_command(command)


_register()

if __name__ == "__main__":
    sys.exit(main())

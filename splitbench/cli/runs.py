"""Runs on the command line: every command records its configuration; ``runs`` lists and
compares them; ``rerun`` repeats one; ``--config FILE`` fills any command's options.

:class:`RunCommand` is the click command class of every command that measures something. It
adds ``--config`` and, around the command's own code, makes the parsed options the current
:class:`~splitbench.runs.RunConfig` (its key names the default folder, the writer stores it as
``config.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

from splitbench import runs
from splitbench.cli import app
from splitbench.errors import SplitbenchError

CONFIG_HELP = ("Fill this command's options from a run's config.yaml (or a YAML file with `command:` and "
               "`options:`); options given on the command line win.")


def _fill_from_config(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    """Eager callback of ``--config``: the file's options become the defaults of the others."""
    if value is None or ctx.resilient_parsing:
        return value
    config = runs.RunConfig.read(value)
    if config.command != ctx.info_name:
        raise SplitbenchError(f"--config {value} is a configuration of `{config.command}`, not `{ctx.info_name}`")
    from splitbench.cli.vocabulary import translate_config

    options = translate_config(config.command, config.options)  # a file written with old option names
    known = {param.name for param in ctx.command.params}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SplitbenchError(f"--config {value}: `{ctx.info_name}` has no option {', '.join(unknown)}")
    # None means "not given": leave those to the option's own default. A configuration says
    # what to measure, not where to write it or whether to stop early: --out and --dry-run
    # stay the command line's (rerun passes the run's own folder).
    given = {name: option for name, option in options.items()
             if option is not None and name not in ("out", "dry_run")}
    ctx.default_map = {**(ctx.default_map or {}), **given}
    return value


def _config_parameter() -> Any:
    """The ``--config`` parameter, built the way typer builds every other option."""
    probe = typer.Typer()

    @probe.command()
    def _probe(config: Annotated[Optional[Path], typer.Option(
            "--config", help=CONFIG_HELP, is_eager=True, callback=_fill_from_config,
            metavar="FILE")] = None) -> None:
        pass

    return typer.main.get_command(probe).params[0]


class RunCommand(typer.core.TyperCommand):
    """A command that measures: takes ``--config``, and runs as a :class:`~splitbench.runs.RunConfig`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_config_parameter())

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from splitbench.cli.vocabulary import translate

        return super().parse_args(ctx, translate(ctx.info_name, list(args)))

    def invoke(self, ctx: Any) -> Any:
        ctx.params.pop("config", None)
        declared = {param.name: ctx.params[param.name] for param in self.params if param.name in ctx.params}
        with runs.running(runs.RunConfig(ctx.info_name, declared)):
            return super().invoke(ctx)


MEASURING = ("profile", "split", "eval", "codec", "train", "prune", "group", "rd", "serve", "link", "plan")


def install() -> None:
    """Make every measuring command a :class:`RunCommand` (called once the commands are registered)."""
    for info in app.registered_commands:
        if info.name in MEASURING and info.cls in (None, typer.core.TyperCommand):
            info.cls = RunCommand


runs_app = typer.Typer(help="List and compare your runs (default folder: $SPLITBENCH_RUNS, else ./runs).",
                       no_args_is_help=False, invoke_without_command=True)
app.add_typer(runs_app, name="runs")

RootOption = Annotated[Optional[Path], typer.Option(
    "--root", help="The runs folder to read (default: $SPLITBENCH_RUNS, else ./runs).", show_default=False)]


@runs_app.callback(invoke_without_command=True)
def runs_list_command(ctx: typer.Context, root: RootOption = None) -> None:
    """List the runs: command, model, cut, data, weights, limit, date and key figures, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from splitbench.cli.render import console, show_table

    found = runs.find_runs(root)
    where = root or runs.runs_root()
    if not found:
        console.print(f"no runs under {where}")
        return
    show_table(runs.runs_table(found, Path(where)), title=f"{len(found)} runs under {where}")


@runs_app.command("compare")
def runs_compare_command(
    folders: Annotated[list[Path], typer.Argument(help="Two or more run folders (from `splitbench runs`).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Also write compare.csv/.md/.json and a plot here.", show_default=False)] = None,
) -> None:
    """Put runs side by side: the settings that differ, then the same metrics per setting."""
    from splitbench.cli.render import console, show_table, show_written

    chosen = [runs.open_run(folder) for folder in folders]
    comparison = runs.compare(chosen)
    show_table(comparison.settings, title="settings that differ")
    show_table(comparison.metrics, title=f"{len(comparison.metrics)} rows joined on "
               f"{', '.join(comparison.keys) or 'nothing (one row each)'}")
    if out is None:
        console.print("(--out DIR writes these tables and a plot)")
        return
    show_written(_write_comparison(comparison, chosen, out))


def _write_comparison(comparison: runs.Comparison, chosen: list[runs.Run], out: Path) -> list[Path]:
    from splitbench import provenance
    from splitbench.preflight import writable_folder
    from splitbench.results import markdown_table, result_set, write_result

    out = writable_folder(out, "--out")
    markdown = ("# Runs compared\n\n## Settings that differ\n\n" + markdown_table(comparison.settings)
                + "\n\n## Metrics\n\n" + markdown_table(comparison.metrics))
    meta = provenance.collect("runs compare", {"folders": [str(run.folder) for run in chosen], "out": str(out)})
    with result_set(out):
        written = write_result(out, "compare", comparison.metrics, meta, markdown,
                               optional=list(comparison.metrics.columns))
        plot = runs.plot_comparison(comparison, chosen, out / "compare.png")
    return written + ([plot] if plot else [])


@app.command("rerun")
def rerun_command(
    folder: Annotated[Path, typer.Argument(help="A run folder holding config.yaml (from `splitbench runs`).")],
) -> None:
    """Repeat a run with its recorded configuration, into its own folder (cached points come back)."""
    config = runs.RunConfig.read(folder)
    if config.command not in MEASURING:
        raise SplitbenchError(f"{folder}: `{config.command}` is not a command that can be re-run")
    config_file = folder / runs.CONFIG_NAME if folder.is_dir() else folder
    out = folder if folder.is_dir() else folder.parent
    command = typer.main.get_command(app)
    command.main(args=[config.command, "--config", str(config_file), "--out", str(out)],
                 prog_name="splitbench", standalone_mode=False)

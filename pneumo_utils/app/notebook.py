"""One call at the top of every notebook: settings, figure style, one-line user errors."""

from __future__ import annotations

from pneumo_utils.app.settings import Settings, notebook_settings, shown_path
from pneumo_utils.data.files import sample_note
from pneumo_utils.plots import report as plots
from pneumo_utils.plots.report import use_figure_style
from pneumo_utils.runtime.errors import UserError


def _show_user_error(shell, etype, value, tb, tb_offset=None):
    """Show a pneumo_utils error as its one line: the cell still counts as failed."""
    line = f"{etype.__name__}: {value}"
    shell._showtraceback(etype, value, [line])
    return [line]


def setup_notebook() -> Settings:
    """Read PNEUMO_* settings, apply the figure style, and print pneumo_utils errors as one line."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.set_custom_exc((UserError,), _show_user_error)
    use_figure_style()
    settings = notebook_settings()
    data = shown_path(settings.data) if settings.has_data else "none here, so the committed files"
    print(
        f"profile: {settings.profile} | dataset: {data} | "
        f"runs in {shown_path(settings.results_dir)}/ | "
        f"figures go to {shown_path(settings.figures)}/"
    )
    if settings.data.is_dir():
        n_images = sum(1 for path in settings.data.rglob("*.jp*g"))
        if note := sample_note(settings.data, n_images):
            print(f"data: {note}: not a result")
    return settings


def save_figure(fig, name: str, settings: Settings) -> None:
    """Save a notebook's figure in its figures folder, and say where (from the repository)."""
    print(f"saved {shown_path(plots.save_figure(fig, name, settings.figures))}")

"""``edgevid variants``: the model registry as a table."""

from __future__ import annotations

import click

from edgevid.cli._options import emit_json, json_option
from edgevid.errors import require


@click.command("variants")
@click.option("--all", "show_all", is_flag=True, help="Include the tiny-* test configurations.")
@json_option("The table")
def variants(show_all: bool, json_path: str | None) -> None:
    """List the model variants with layers, parameters and GFLOPs per clip.

    \b
    GFLOPs count multiply-adds for one clip (T frames), as the TimeSformer paper does.
    Computed on PyTorch's meta device: nothing is downloaded or allocated.
    """
    require("torch", "train", "edgevid variants")
    from edgevid.train.models import list_models, model_spec
    from edgevid.train.models.profile import profile_variant

    names = [n for n in list_models() if show_all or not n.startswith("tiny-")]
    rows = [profile_variant(n) for n in names]
    document = [r.__dict__ | {"size_mb": r.size_mb} for r in rows]
    if json_path is not None and emit_json(json_path, document):
        return
    click.echo(
        f"{'variant':<18}{'layers':>7}{'params':>10}{'MB':>8}{'GFLOPs':>9}  input      description"
    )
    for r in rows:
        inp = f"{r.frames}x{r.image_size}²"
        click.echo(
            f"{r.name:<18}{r.layers:>7}{r.params / 1e6:>9.2f}M{r.size_mb:>8.1f}{r.gflops:>9.2f}"
            f"  {inp:<10} {model_spec(r.name).description}"
        )


COMMANDS = [variants]

"""`python -m zoo [NAME ...]`: the registered models, or the named ones built, with their sizes.

`python -m zoo` (or `--list`) lists every model: its native input size, its backbone's parameters,
where fine-tuning may start from, and what it is; nothing is built but the zoo's own small models.
`python -m zoo NAME ...` builds the named models and prints their summaries and sizes.
`python -m zoo NAME --layers` lists the backbone's layers with their index, trainable weights and
output shape: the names `--unfreeze_from` accepts (the seed lists Xception's 132 the same way).

A model is built at its native input size (224x224x3 where it has none; 28x28x1 for fashion_cnn)
with random weights: nothing is downloaded.
"""

from __future__ import annotations

import sys

from absl import app, flags

# A bad flag: one line and exit status 2, as in the trainers' programs.
from zoo.common import parse_flags_or_exit as parse_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This program's flags; defined when it runs, so importing the module defines nothing."""
    from zoo.common import HEADS

    flags.DEFINE_integer("num_classes", 10, "Classes of the head.", lower_bound=2)
    flags.DEFINE_enum("head", "classify", list(HEADS), "Head to put on the backbone.")
    flags.DEFINE_boolean("summary", True, "Print each model's layer summary.")
    flags.DEFINE_boolean("layers", False, "List the backbone's layers (index, name, type), for --unfreeze_from.")
    flags.DEFINE_boolean("list", False, "List every model (the default without NAME), building none of the large ones.")


USUAL_INPUT = {"fashion_cnn": (28, 28, 1)}
DEFAULT_INPUT = (224, 224, 3)


def usual_input(name: str) -> tuple[int, int, int]:
    import zoo

    native = zoo.spec(name).native_size
    return USUAL_INPUT.get(name, (native, native, 3) if native else DEFAULT_INPUT)


def list_models() -> None:
    """Every registered model, a line each, from the registry (a model is built only where its
    parameter count is not recorded: the zoo's own small ones)."""
    import zoo

    print(f"{'model':<20} {'native input':<15} {'backbone params':>15}  {'unfreeze points':<16}  description")
    for name in zoo.names():
        spec = zoo.spec(name)
        parameters = spec.parameters
        if parameters is None:
            model = zoo.build(name, num_classes=FLAGS.num_classes, input_shape=usual_input(name))
            parameters = zoo.backbone_of(model).count_params()
        points = str(len(spec.unfreeze_points)) if spec.unfreeze_points else "-"
        shape = str(usual_input(name)) if spec.native_size or name in USUAL_INPUT else "any"
        print(f"{name:<20} {shape:<15} {parameters:>15,}  {points:<16}  {spec.summary}")


def main(argv):
    import zoo

    requested = argv[1:]
    if FLAGS.list or not requested:
        list_models()
        return 0
    rows = []
    for name in requested:
        try:
            model = zoo.build(
                name,
                num_classes=FLAGS.num_classes,
                input_shape=usual_input(name),
                head=FLAGS.head,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if FLAGS.layers:
            print_backbone_layers(name, model)
            continue
        if FLAGS.summary:
            model.summary(expand_nested=False)
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        rows.append((name, model.input_shape[1:], model.count_params(), trainable, zoo.spec(name).summary))
    if not rows:
        return 0
    print(f"\n{'model':<20} {'input':<15} {'parameters':>12} {'trainable':>12}  description")
    for name, shape, total, trainable, summary in rows:
        print(f"{name:<20} {str(shape):<15} {total:>12,} {trainable:>12,}  {summary}")
    return 0


def print_backbone_layers(name, model) -> None:
    import zoo

    layers = zoo.backbone_of(model).layers
    print(f"backbone of {name}: {len(layers)} layers (train from one on with --unfreeze_from=NAME)")
    print(f"{'index':>5}  {'name':<28} {'type':<22} {'parameters':>10}  output")
    for index, layer in enumerate(layers):
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape[1:]) if shape is not None and hasattr(shape, "shape") else ""
        print(f"{index:>5}  {layer.name:<28} {type(layer).__name__:<22} {layer.count_params():>10,}  {shape}")


if __name__ == "__main__":
    from zoo import compat

    compat.start_tensorflow_quietly()
    define_flags()
    app.run(main, flags_parser=parse_flags)

"""Extract item image vectors ahead of training (text vectors are encoded by ``run_ur4rec.py``).

    python -m ur4rec_recbole encode --dataset NAME --images --image-model ViT-B-32 \\
        --image-pretrained TAG|PATH|none [--config_files A.yaml] [--key=value ...]

``--key=value`` are the dataset settings of ``run_ur4rec.py`` (``--data_path=DIR``,
``--item_image_field=poster``, ``--image_batch_size=64`` ...). Writes
``<dataset>.image_vec.npz`` (or ``image_vector_file``) and a report of the
items without a usable image next to it (``<...>.report.json``).
"""

from __future__ import annotations

import argparse
import json
import sys

from ur4rec_recbole.cli.common import add_dataset_arguments, command, quiet_library_warnings, split_overrides


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ur4rec_recbole encode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, required=True)
    parser.add_argument("--images", action="store_true", help="encode the item images (required: the only kind here)")
    parser.add_argument("--image-model", default=None, help="open_clip architecture (yaml: image_model)")
    parser.add_argument("--image-pretrained", default=None,
                        help="open_clip tag (local cache), checkpoint path, or none (yaml: image_pretrained)")
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.images:
        parser.error("nothing to encode: pass --images (text vectors are encoded by run_ur4rec.py)")
    quiet_library_warnings()
    with command(args.debug):
        return _encode(args, split_overrides(extra))


def _encode(args: argparse.Namespace, overrides: dict[str, str]) -> dict:
    from ur4rec_recbole.features.images import encode_item_images, image_vector_path, report_path
    from ur4rec_recbole.run.prepare import prepare_run

    for key, value in (("image_model", args.image_model), ("image_pretrained", args.image_pretrained)):
        if value is not None:
            overrides[key] = value
    config = prepare_run("UR4Rec", args.dataset, args.config_files, cmd_overrides=overrides,
                         build_dataset=False).config
    report = encode_item_images(config).as_json()
    out = image_vector_path(config)
    print(json.dumps({k: v for k, v in report.items() if k not in ("missing", "corrupt")}))
    print(f"vectors: {out}\nreport:  {report_path(out)}")
    return report


if __name__ == "__main__":
    main()

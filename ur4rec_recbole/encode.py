"""Extract item image vectors ahead of training (text vectors are encoded by ``run_ur4rec.py``).

    python -m ur4rec_recbole.encode --dataset NAME --images --image-model ViT-B-32 \\
        --image-pretrained TAG|PATH|none [--key=value ...]

``--key=value`` are the dataset settings of ``run_ur4rec.py`` (``--data_path=DIR``,
``--item_image_field=poster``, ``--image_batch_size=64`` ...). Writes
``<dataset>.image_vec.npz`` (or ``image_vector_file``) and a report of the
items without a usable image next to it (``<...>.report.json``).
"""

from __future__ import annotations

import argparse
import json
import sys

from ur4rec_recbole.cli import split_overrides


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", "-d", required=True, help="dataset name (a folder of atomic files)")
    parser.add_argument("--images", action="store_true", help="encode the item images (required: the only kind here)")
    parser.add_argument("--image-model", default=None, help="open_clip architecture (yaml: image_model)")
    parser.add_argument("--image-pretrained", default=None,
                        help="open_clip tag (local cache), checkpoint path, or none (yaml: image_pretrained)")
    parser.add_argument("--config_files", nargs="+", default=None, help="yaml files, later ones win")
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.images:
        parser.error("nothing to encode: pass --images (text vectors are encoded by run_ur4rec.py)")
    overrides = split_overrides(extra)
    for key, value in (("image_model", args.image_model), ("image_pretrained", args.image_pretrained)):
        if value is not None:
            overrides[key] = value

    from recbole.utils import init_logger

    from ur4rec_recbole.config import Config
    from ur4rec_recbole.features.images import WeightsUnavailable, encode_item_images, image_vector_path, report_path
    from ur4rec_recbole.utils import ensure_atomic_files

    config = Config("UR4Rec", args.dataset, args.config_files, cmd_overrides=overrides)
    init_logger(config)
    ensure_atomic_files(config)
    try:
        report = encode_item_images(config).as_json()
    except WeightsUnavailable as err:  # one message, not open_clip's download traceback
        raise SystemExit(f"error: {err}") from None
    out = image_vector_path(config)
    print(json.dumps({k: v for k, v in report.items() if k not in ("missing", "corrupt")}))
    print(f"vectors: {out}\nreport:  {report_path(out)}")
    return report


if __name__ == "__main__":
    main()

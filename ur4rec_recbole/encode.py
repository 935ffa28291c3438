"""Fetch item images and extract their vectors ahead of training (text vectors are encoded by ``run_ur4rec.py``).

    python -m ur4rec_recbole.encode --dataset NAME --download-images [--download-workers 8 ...]
    python -m ur4rec_recbole.encode --dataset NAME --images --image-model ViT-B-32 \\
        --image-pretrained TAG|PATH|none [--key=value ...]

``--download-images`` fetches the images whose URLs are in the ``.item``
column ``item_image_field`` (the converters write ``image_url``) into
``<data_path>/images/<token>.<ext>`` and lists every failure in
``<dataset>.image_download.json``; with ``--images`` too, they are encoded next.

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
from ur4rec_recbole.features.download import DownloadOptions, download_item_images, download_report_path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", "-d", required=True, help="dataset name (a folder of atomic files)")
    parser.add_argument("--images", action="store_true", help="encode the item images (required: the only kind here)")
    parser.add_argument("--image-model", default=None, help="open_clip architecture (yaml: image_model)")
    parser.add_argument("--image-pretrained", default=None,
                        help="open_clip tag (local cache), checkpoint path, or none (yaml: image_pretrained)")
    parser.add_argument("--config_files", nargs="+", default=None, help="yaml files, later ones win")
    download = parser.add_argument_group("downloading images from the URLs in item_image_field")
    download.add_argument("--download-images", action="store_true", help="fetch the item images first")
    defaults = DownloadOptions()
    download.add_argument("--download-workers", type=int, default=defaults.workers, help="concurrent downloads")
    download.add_argument("--download-rate", type=float, default=defaults.rate,
                          help="requests per second to one host (0: no limit)")
    download.add_argument("--download-timeout", type=float, default=defaults.timeout, help="seconds per read")
    download.add_argument("--download-retries", type=int, default=defaults.retries,
                          help="extra attempts after 429/5xx/timeouts")
    download.add_argument("--download-max-mb", type=float, default=defaults.max_bytes / (1 << 20),
                          help="size cap of one image in MiB")
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.images and not args.download_images:
        parser.error("nothing to do: pass --download-images and/or --images (text vectors are encoded by "
                     "run_ur4rec.py)")
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
    report: dict = {}
    if args.download_images:
        options = DownloadOptions(workers=args.download_workers, rate=args.download_rate,
                                  timeout=args.download_timeout, retries=args.download_retries,
                                  max_bytes=int(args.download_max_mb * (1 << 20)))
        try:
            fetched = download_item_images(config, options).as_json()
        except ValueError as err:  # item_image_field unset or not a column: one line
            raise SystemExit(f"error: {err}") from None
        print(json.dumps({k: v for k, v in fetched.items() if k != "failed"}))
        print(f"images:  {config['data_path']}/images/\nreport:  "
              f"{download_report_path(config['data_path'], config['dataset'])}")
        report["download"] = fetched
        if not args.images:
            return report
    try:
        encoded = encode_item_images(config).as_json()
    except WeightsUnavailable as err:  # one message, not open_clip's download traceback
        raise SystemExit(f"error: {err}") from None
    out = image_vector_path(config)
    print(json.dumps({k: v for k, v in encoded.items() if k not in ("missing", "corrupt")}))
    print(f"vectors: {out}\nreport:  {report_path(out)}")
    return {**encoded, **report}


if __name__ == "__main__":
    main()

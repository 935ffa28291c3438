"""Text and image vectors ahead of training: the stage between the texts (``generate``) and ``run``.

    python -m ur4rec_recbole encode --dataset NAME --texts [--text_source=openai] [--key=value ...]
    python -m ur4rec_recbole encode --dataset NAME --download-images [--download-workers 8 ...]
    python -m ur4rec_recbole encode --dataset NAME --images [--image-model efficientnet-lite0]
    python -m ur4rec_recbole encode --dataset NAME --images --image-model ViT-B-32 \\
        --image-pretrained TAG|PATH|none [--config_files A.yaml] [--key=value ...]

``efficientnet-lite0`` (the default; also ``-lite1``, ``-lite2``) uses the ImageNet
weights shipped in the ``[images]`` extra's packages: no download, no other flag.
Any other name is an open_clip architecture (weights: a tag in the local cache,
a checkpoint file, or none).

``--download-images`` fetches the images whose URLs are in the ``.item``
column ``item_image_field`` (the converters write ``image_url``) into
``<data_path>/images/<token>.<ext>`` and lists every failure in
``<dataset>.image_download.json``; with ``--images`` too, they are encoded next.

``--texts`` writes the texts of ``text_source`` when they are built on the fly
(``template``; LLM texts come from ``generate``), checks that they match this
split's training portions, and encodes them into ``<dataset>.{item_know,user_pref}.<source>.npz``:
the same functions a run calls when it builds its dataset, so the run then reads
the vectors (their content hash is unchanged) instead of encoding them.

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
from ur4rec_recbole.features.download import DownloadOptions


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ur4rec_recbole encode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_arguments(parser, required=True)
    parser.add_argument("--texts", action="store_true",
                        help="write the texts of text_source (template) and encode them into text vectors")
    parser.add_argument("--images", action="store_true", help="encode the item images")
    parser.add_argument("--image-model", default=None,
                        help="efficientnet-lite0/1/2 (packaged weights) or an open_clip architecture (yaml: image_model)")
    parser.add_argument("--image-pretrained", default=None,
                        help="default, none (untrained), a checkpoint path, or an open_clip tag in the local cache "
                             "(yaml: image_pretrained)")
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
    if not (args.texts or args.images or args.download_images):
        parser.error("nothing to do: pass --texts, --download-images and/or --images")
    quiet_library_warnings()
    with command(args.debug):
        return _encode(args, split_overrides(extra))


def _encode(args: argparse.Namespace, overrides: dict[str, str]) -> dict:
    from ur4rec_recbole.features.download import download_item_images, download_report_path
    from ur4rec_recbole.features.images import encode_item_images, image_vector_path, report_path
    from ur4rec_recbole.run.prepare import prepare_run

    for key, value in (("image_model", args.image_model), ("image_pretrained", args.image_pretrained)):
        if value is not None:
            overrides[key] = value
    prepared = prepare_run("UR4Rec", args.dataset, args.config_files, cmd_overrides=overrides,
                           build_dataset=args.texts)
    config = prepared.config
    report: dict = {}
    if args.texts:
        report["texts"] = _encode_texts(prepared.dataset, config)
    if args.download_images:
        options = DownloadOptions(workers=args.download_workers, rate=args.download_rate,
                                  timeout=args.download_timeout, retries=args.download_retries,
                                  max_bytes=int(args.download_max_mb * (1 << 20)))
        fetched = download_item_images(config, options).as_json()
        print(json.dumps({k: v for k, v in fetched.items() if k != "failed"}))
        print(f"images:  {config['data_path']}/images/\n"
              f"report:  {download_report_path(config['data_path'], config['dataset'])}")
        report["download"] = fetched
    if not args.images:
        return report
    encoded = encode_item_images(config).as_json()
    out = image_vector_path(config)
    print(json.dumps({k: v for k, v in encoded.items() if k not in ("missing", "corrupt")}))
    print(f"vectors: {out}\nreport:  {report_path(out)}")
    return {**encoded, **report}


def _encode_texts(dataset, config) -> dict[str, str]:
    """Texts and their vectors through the dataset's own build (``features/pipeline.prepare_features``)."""
    from ur4rec_recbole.features.pipeline import vector_tables

    dataset.build()  # splits, then writes (template) or reads the texts and encodes what is not cached
    tables = {kind: str(path) for kind, path in vector_tables(config).items() if kind != "item_image"}
    for kind, path in tables.items():
        print(f"{kind} vectors: {path}")
    return tables


if __name__ == "__main__":
    main()

"""Item-image benchmarks on ml-100k: synthetic posters, extraction speed, epoch time by modality.

    python benchmarks/images.py posters                 # dataset/ml-100k/images/<item>.jpg
    python benchmarks/images.py extract --image_model=ViT-B-32
    python benchmarks/images.py table benchmarks/results/images-*.json benchmarks/results/UR4Rec-*-1epoch-*.json
    python benchmarks/images.py neighbours --image_model=efficientnet-lite0 [--count=300]

``neighbours`` checks that an encoder's vectors tell real posters apart
(``dataset/<name>/images/``, e.g. from ``benchmarks/posters.py``): each of
``count`` posters (a fixed sample) and a mirrored copy cropped to its central
85% are encoded; the share of copies whose nearest original is their own,
and the mean pairwise cosine of the originals, go to
``results/images-neighbours-<dataset>-<model>.json``.

``overlap`` asks what the image vectors know that the item texts do not: over the
items with both, the correlation of image and text cosines, and how often an
item's nearest neighbour shares a genre or is within five years, by image, by
text and at random (``results/images-overlap-<dataset>.json``).

``posters`` draws one synthetic 200x300 JPEG per movie (a background in the
colour of its first genre, a shape, and its title) for timing; it replaces
``images/``. Real posters come from ``benchmarks/posters.py`` (docs/guides/images.md). Extraction
costs the same with or without trained weights (same network), so ``extract``
times an untrained model (``image_pretrained: none``). Epoch times come from
``run_ur4rec.py --results`` files (see the README for the commands).
"""

from __future__ import annotations

import argparse
import colorsys
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ur4rec_recbole.cli.common import split_overrides

RESULTS = Path(__file__).resolve().parent / "results"
BOX = (40, 60, 160, 180)
SHAPES = (  # drawn in white, chosen by item id
    lambda draw: draw.ellipse(BOX, fill="white"),
    lambda draw: draw.rectangle(BOX, fill="white"),
    lambda draw: draw.polygon([(100, 60), (160, 180), (40, 180)], fill="white"),
)


def draw_posters(data_path: Path, dataset: str) -> int:
    """One poster per item of ``<dataset>.item``, colour by first genre; returns how many."""
    from PIL import Image, ImageDraw

    items = pd.read_csv(data_path / f"{dataset}.item", sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    genres = sorted({g for value in items["class"] for g in value.split()})
    folder, tmp = data_path / "images", data_path / ".images.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for _, row in tqdm(items.iterrows(), total=len(items), desc="posters", unit="img"):
        first = (row["class"].split() or [genres[0]])[0]
        rgb = colorsys.hsv_to_rgb(genres.index(first) / len(genres), 0.7, 0.9)
        image = Image.new("RGB", (200, 300), tuple(int(255 * c) for c in rgb))
        draw = ImageDraw.Draw(image)
        SHAPES[int(row["item_id"]) % len(SHAPES)](draw)
        draw.text((10, 220), row["movie_title"][:28], fill=(0, 0, 0))
        draw.text((10, 240), row["release_year"], fill=(0, 0, 0))
        image.save(tmp / f"{row['item_id']}.jpg", quality=90)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)  # never a half-written images/ folder
    return len(items)


def config_for(dataset: str, overrides: dict):
    from ur4rec_recbole.run.prepare import prepare_run

    return prepare_run("UR4Rec", dataset, cmd_overrides=overrides, build_dataset=False).config


def extract(dataset: str, overrides: dict) -> dict:
    """Encode every poster from scratch (cache removed) and record images per second."""
    from ur4rec_recbole.features.images import encode_item_images, image_vector_path
    from ur4rec_recbole.io import machine, write_json

    config = config_for(dataset, overrides)
    image_vector_path(config).unlink(missing_ok=True)  # time the extraction, not the cache
    report = encode_item_images(config).as_json()
    result = {
        "dataset": dataset, "image_model": config["image_model"], "image_pretrained": str(config["image_pretrained"]),
        "image_size": config["image_size"], "image_batch_size": config["image_batch_size"],
        "device": config["image_device"] or ("cuda" if machine()["cuda"] else "cpu"),
        "images": report["encoded"], "seconds": report["seconds"], "images_per_second": report["images_per_second"],
        "machine": machine(), "command": "python benchmarks/images.py extract " + " ".join(sys.argv[2:]),
    }
    write_json(RESULTS / f"images-{dataset}-{config['image_model']}-{result['device']}.json", result)
    return result


def neighbours(dataset: str, overrides: dict) -> dict:
    """Nearest-neighbour recovery of mirrored, cropped posters, and the originals' mean pairwise cosine."""
    import random
    from time import time

    import torch
    from PIL import Image, ImageOps

    from ur4rec_recbole.features.image_encoders import load_image_encoder
    from ur4rec_recbole.io import machine, write_json

    count = int(overrides.pop("count", 300))
    config = config_for(dataset, overrides)
    files = sorted((Path(config["data_path"]) / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    files = sorted(random.Random(0).sample(files, min(count, len(files))), key=lambda p: int(p.stem))
    encoder = load_image_encoder(config["image_model"], config["image_pretrained"], "cpu", config["image_size"])

    def vectors(images) -> torch.Tensor:  # [N, D], unit length
        chunks = []
        for start in tqdm(range(0, len(images), 32), desc=config["image_model"], unit="batch"):
            batch = torch.stack([encoder.preprocess(image) for image in images[start : start + 32]])
            with torch.no_grad():
                chunks.append(encoder.encode(batch))
        return torch.cat(chunks)

    originals = [Image.open(path).convert("RGB") for path in files]
    copies = []
    for image in originals:
        w, h = image.size
        dx, dy = int(w * 0.075), int(h * 0.075)
        copies.append(ImageOps.mirror(image).crop((dx, dy, w - dx, h - dy)))
    start = time()
    base, changed = vectors(originals), vectors(copies)
    seconds = time() - start
    own = (changed @ base.T).argmax(1) == torch.arange(len(files))
    cosine = base @ base.T
    off_diagonal = cosine[~torch.eye(len(files), dtype=torch.bool)]
    result = {
        "dataset": dataset, "image_model": config["image_model"], "image_pretrained": str(encoder.pretrained),
        "posters": len(files), "copy": "mirrored, central 85% crop",
        "nearest_is_own": int(own.sum()), "nearest_is_own_share": float(own.float().mean()),
        "mean_pairwise_cosine": float(off_diagonal.mean()), "seconds": seconds,
        "images_per_second": 2 * len(files) / seconds, "machine": machine(),
        "command": "python benchmarks/images.py neighbours " + " ".join(sys.argv[2:]),
    }
    write_json(RESULTS / f"images-neighbours-{dataset}-{config['image_model']}.json", result)
    return result


def overlap(dataset: str, overrides: dict) -> dict:
    """Image vectors against the text vectors and the genres/years the texts already state."""
    import numpy as np
    from scipy.stats import spearmanr

    from ur4rec_recbole.features.images import image_vector_path
    from ur4rec_recbole.features.table import load_vector_table
    from ur4rec_recbole.io import write_json

    config = config_for(dataset, overrides)
    data_path = Path(config["data_path"])
    image_tokens, image_vectors, image_meta = load_vector_table(image_vector_path(config))
    text_file = Path(config["item_vector_file"] or data_path / f"{dataset}.item_know.template.npz")
    text_tokens, text_vectors, text_meta = load_vector_table(text_file)
    items = pd.read_csv(data_path / f"{dataset}.item", sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    genres = {t: set(g.split()) for t, g in zip(items["item_id"], items["class"])}
    years = {t: int(y) if y.isdigit() else None for t, y in zip(items["item_id"], items["release_year"])}
    text_row = {str(t): i for i, t in enumerate(text_tokens)}
    tokens = [str(t) for t in image_tokens if str(t) in text_row]
    image = image_vectors[[i for i, t in enumerate(image_tokens) if str(t) in text_row]]
    text = text_vectors[[text_row[t] for t in tokens]]
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    image_cos, text_cos = image @ image.T, text @ text.T  # [N, N]
    upper = np.triu_indices(len(tokens), 1)
    n = len(tokens)

    def neighbour_agreement(cos: np.ndarray) -> dict:
        cos = cos.copy()
        np.fill_diagonal(cos, -np.inf)
        nearest = cos.argmax(1)
        same_genre = [bool(genres[tokens[i]] & genres[tokens[j]]) for i, j in enumerate(nearest)]
        close = [years[tokens[i]] is not None and years[tokens[j]] is not None
                 and abs(years[tokens[i]] - years[tokens[j]]) <= 5 for i, j in enumerate(nearest)]
        return {"shares_a_genre": float(np.mean(same_genre)), "within_5_years": float(np.mean(close))}

    rng = np.random.default_rng(0)
    random_cos = rng.random((n, n))
    result = {
        "dataset": dataset, "items_with_both": n, "image_encoder": image_meta.get("encoder"),
        "text_encoder": text_meta.get("encoder"), "text_file": text_file.name,
        "spearman_image_vs_text_cosine": float(spearmanr(image_cos[upper], text_cos[upper]).statistic),
        "mean_image_cosine": float(image_cos[upper].mean()),
        "nearest_by_image": neighbour_agreement(image_cos), "nearest_by_text": neighbour_agreement(text_cos),
        "nearest_at_random": neighbour_agreement(random_cos),
        "command": "python benchmarks/images.py overlap " + " ".join(sys.argv[2:]),
    }
    write_json(RESULTS / f"images-overlap-{dataset}.json", result)
    return result


def table(paths: list[Path]) -> str:
    """Markdown tables: extraction speed, and seconds per training epoch by modality."""
    extraction = ["| image model | device | images | batch | images/s | machine |", "|---|---|---|---|---|---|"]
    epochs = ["| modalities | modality_fusion | train s/epoch | valid NDCG@10 after 1 epoch | machine |",
              "|---|---|---|---|---|"]
    for path in paths:
        result = json.loads(path.read_text())
        where = result["machine"]
        cpu = f"{where['cpu_count']} cores, {where['torch_threads']} torch threads" + (
            f", {where['cuda']}" if where["cuda"] else "")
        if "images_per_second" in result:
            extraction.append(f"| {result['image_model']} | {result['device']} | {result['images']} | "
                              f"{result['image_batch_size']} | {result['images_per_second']:.1f} | {cpu} |")
        else:
            config = result["config"]
            fusion = config["modality_fusion"] if "," in str(config["modalities"]) else "-"
            epochs.append(f"| {config['modalities']} | {fusion} | {result['seconds_per_epoch']:.1f} | "
                          f"{result['best_valid_result']['ndcg@10']:.4f} | {cpu} |")
    return "\n".join(extraction) + "\n\n" + "\n".join(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("posters", "extract", "table", "neighbours", "overlap"))
    parser.add_argument("paths", nargs="*", type=Path, help="results files (table)")
    parser.add_argument("--dataset", default="ml-100k")
    args, extra = parser.parse_known_args()
    overrides = split_overrides(extra)
    if args.task == "posters":
        config = config_for(args.dataset, overrides)
        print(f"{draw_posters(Path(config['data_path']), args.dataset)} posters in {config['data_path']}/images")
    elif args.task == "extract":
        print(json.dumps(extract(args.dataset, overrides), indent=2))
    elif args.task == "overlap":
        print(json.dumps(overlap(args.dataset, overrides), indent=2))
    elif args.task == "neighbours":
        print(json.dumps({k: v for k, v in neighbours(args.dataset, overrides).items() if k != "machine"}, indent=2))
    else:
        print(table(args.paths))


if __name__ == "__main__":
    main()

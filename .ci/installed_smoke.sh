#!/usr/bin/env bash
# The package installed non-editable (pip install .) runs from another folder: yaml defaults, prompts
# and commands come from the installed copy, not from this checkout.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
mkdir "$work/src"
tar -C "$repo" --exclude=./.git --exclude=./dataset --exclude=./saved --exclude=./log --exclude=./build -cf - . \
    | tar -C "$work/src" -xf -
pip install --quiet --no-deps --no-build-isolation --target "$work/site" "$work/src"
cd "$work"
export PYTHONPATH="$work/site"
python - "$repo" <<'PY'
import sys
from pathlib import Path
import ur4rec_recbole
installed = Path(ur4rec_recbole.__file__).parent
assert installed.is_relative_to(Path.cwd()), installed
for shipped in ("config/properties/overall.yaml", "config/properties/model/UR4Rec.yaml",
                "config/properties/texts.yaml", "config/properties/hyper/ur4rec.hyper", "generate/prompts/user_pref.yaml"):
    assert (installed / shipped).is_file(), f"{shipped} is not installed with the package (package-data)"
sys.path.append(str(Path(sys.argv[1]) / "tests"))  # the tiny dataset writer only
from conftest import write_tiny_dataset
write_tiny_dataset(Path("data"))
PY
python -m ur4rec_recbole --dataset tiny --data_path=data --epochs=1 --hidden_size=16 --inner_size=32 \
    --n_layers=1 --MAX_ITEM_LIST_LENGTH=6 --show_progress=False --state=WARNING \
    --load_col="{'inter': ['user_id', 'item_id', 'rating', 'timestamp'], 'item': ['item_id', 'title', 'category', 'year']}" \
    --item_text_fields="['title', 'category', 'year']" --user_profile_fields="['category', 'year']" --results out.json
python -c "import json; r = json.load(open('out.json')); assert r['epochs_run'] == 1, r; print('installed package: ok')"

"""What a dataset's atomic files imply for its settings: zero-config defaults and the checks before data loads.

The Config reads the headers of the atomic files (their first line,
:func:`ur4rec_recbole.formats.atomic.read_header`) and, for every setting the
user left unset (no ``--config_files``, ``--key=value``, folder yaml
``DIR/<name>/<name>.yaml`` or package yaml sets it):

- ``load_col``: every column of every atomic file (RecBole's default loads
  ``user_id`` and ``item_id`` only and then misses the time column);
- ``alias_of_item_id``: the history column of RecBole's pre-split sequential
  files (``item_id_list``), which must share the item ids;
- ``item_text_fields``: the ``.item`` columns of type ``token``/``token_seq``
  other than the item id, the image column and columns of URLs;
- ``user_profile_fields``: those of them whose values are shared
  (:data:`MIN_ITEMS_PER_VALUE` items per distinct value on average, a
  ``token_seq`` column counted per token: genres, categories, brands, years;
  not titles or descriptions); when none is, the most shared one.

The choices are returned as log lines saying how to override them. Checked
here, each one :class:`InputError` naming the file, the column and the fix:
the time column exists, is a ``float`` and is loaded; ``load_col`` loads the
user and item ids. (Whether ``item_text_fields`` name loaded ``.item``
columns is checked by the datasets that read texts,
``data.dataset.check_text_inputs``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection

from ur4rec_recbole.formats.atomic import Column, read_columns, read_header
from ur4rec_recbole.errors import InputError

MIN_ITEMS_PER_VALUE = 4.0  # a profile field's values are shared by this many items on average
TEXT_TYPES = ("token", "token_seq")


def dataset_yaml_path(data_root: str | Path, dataset: str) -> Path:
    """``DIR/<name>/<name>.yaml``: the settings that travel with a dataset's atomic files."""
    return Path(data_root) / dataset / f"{dataset}.yaml"


def inter_files(config) -> list[Path]:
    """The interaction files RecBole reads: ``<name>.inter``, or ``<name>.<part>.inter`` per ``benchmark_filename``."""
    folder, name = Path(config["data_path"]), config["dataset"]
    parts = config["benchmark_filename"]
    return [folder / f"{name}.{part}.inter" for part in parts] if parts else [folder / f"{name}.inter"]


def _header(config, path: Path) -> tuple[Column, ...] | None:
    return read_header(path, config["field_separator"], config["encoding"]) if path.is_file() else None


def _loaded(config, suffix: str) -> list[str] | None:
    """The columns ``load_col`` loads from ``<name>.<suffix>`` (None: all)."""
    load_col = config["load_col"]
    if load_col is None:
        return None
    return list(load_col.get(suffix) or [])


def complete_dataset_settings(config, configured: Collection[str]) -> list[str]:
    """Fill the unset dataset settings from the atomic files' headers and check them; return the log lines.

    ``configured``: the settings some source gave (anything but RecBole's defaults).
    Nothing is read when an interaction file is not there yet (ml-100k is
    copied later; a missing file is reported by ``ensure_atomic_files``).
    """
    interactions = inter_files(config)
    if not all(path.is_file() for path in interactions):
        return []
    notes: list[str] = []
    folder, name = Path(config["data_path"]), config["dataset"]
    if "load_col" not in configured:
        config["load_col"] = None
        notes.append(f"load_col is not set: every column of {name}'s atomic files is loaded (set load_col "
                     f"in {dataset_yaml_path(folder.parent, name)} to load fewer)")
    headers = {path: _header(config, path) for path in interactions}
    given_rows = _check_inter(config, headers)
    if given_rows and "alias_of_item_id" not in configured:
        history = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
        config["alias_of_item_id"] = [history]
        notes.append(f"alias_of_item_id is not set: {history} holds item ids ({interactions[0].name} gives each "
                     f"row's history)")
    if "item_text_fields" in config.final_config_dict:  # a model of this package, or set by the user
        notes += _choose_text_fields(config, folder / f"{name}.item", configured)
    return notes


def _check_inter(config, headers: dict[Path, tuple[Column, ...]]) -> bool:
    """Check the ids and the time column of the interaction files; True when they are RecBole's pre-split rows.

    RecBole's pre-split sequential files give each row its history
    (``item_id_list``) and need no time column; plain interaction rows are
    ordered by time.
    """
    uid, iid, time = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]
    loaded = _loaded(config, "inter")
    given_rows = False
    for path, columns in headers.items():
        types = {c.name: c.type for c in columns}
        rows_given = (iid or "") + config["LIST_SUFFIX"] in types
        given_rows |= rows_given
        fix_load = f"add it to load_col's inter list ({loaded}), or leave load_col unset to load every column"
        for key, field in (("USER_ID_FIELD", uid), ("ITEM_ID_FIELD", iid)):
            if loaded is not None and field and field not in loaded:
                raise InputError(f"setting load_col does not load the {key} column {field!r} from {path}: "
                                 f"{fix_load}")
        ordered = config["MODEL_TYPE"].name == "SEQUENTIAL" or config["eval_args"]["order"] == "TO"
        if rows_given or not ordered:
            continue
        if not time:
            raise InputError(f"setting TIME_FIELD is empty, but {config['model']} orders each user's "
                             f"interactions by time: name the time column of {path} (e.g. --TIME_FIELD=timestamp)")
        if time not in types:
            raise InputError(
                f"{path}, line 1: no time column {time!r} (columns: {', '.join(types)}); interactions are ordered "
                f"by it: add a {time}:float column (the position in the user's history will do), or name your "
                f"time column with TIME_FIELD (--TIME_FIELD=COLUMN, or `TIME_FIELD: COLUMN` in "
                f"{dataset_yaml_path(path.parent.parent, config['dataset'])})"
            )
        if types[time] != "float":
            raise InputError(f"{path}, line 1: time column {time!r} is {types[time]}, so it cannot be ordered; "
                             f"declare it {time}:float (seconds, or the position in the user's history)")
        if loaded is not None and time not in loaded:
            raise InputError(f"setting load_col does not load the time column {time!r} from {path}: {fix_load}")
    return given_rows


def _choose_text_fields(config, item_path: Path, configured: Collection[str]) -> list[str]:
    """``item_text_fields`` and ``user_profile_fields`` from the ``.item`` columns, where unset."""
    missing = [key for key in ("item_text_fields", "user_profile_fields")
               if key not in configured and not config[key]]
    columns = _header(config, item_path)
    if not missing or columns is None:
        return []
    loaded = _loaded(config, "item")
    if loaded == []:
        return [f"load_col loads nothing from {item_path.name}, so no text fields can be chosen: add an item list "
                f"to load_col, or leave load_col unset to load every column"]
    skip = {config["ITEM_ID_FIELD"], config["item_image_field"]}
    names = [c.name for c in columns if c.type in TEXT_TYPES and c.name not in skip
             and (loaded is None or c.name in loaded)]
    shared = _items_per_value(config, item_path, [c for c in columns if c.name in names])
    texts = [n for n in names if n in shared]  # not empty, not URLs
    if not texts:
        return [f"{item_path} has no text column (token or token_seq, besides {config['ITEM_ID_FIELD']}) to make "
                f"texts from; set item_text_fields and user_profile_fields, or run a model without texts"]
    profile = [n for n in texts if shared[n] >= MIN_ITEMS_PER_VALUE] or [max(texts, key=lambda n: shared[n])]
    chosen = {"item_text_fields": texts, "user_profile_fields": profile}
    why = {"item_text_fields": "its token/token_seq columns",
           "user_profile_fields": f"columns whose values are shared by >= {MIN_ITEMS_PER_VALUE:g} items on average"}
    notes = []
    for key in missing:
        config[key] = chosen[key]
        notes.append(f"{key} is not set: using {chosen[key]} from {item_path.name} ({why[key]}); to choose, set "
                     f"`{key}: [...]` in {dataset_yaml_path(item_path.parent.parent, config['dataset'])} or pass "
                     f"--{key}=\"[...]\"")
    return notes


def _items_per_value(config, path: Path, columns: list[Column]) -> dict[str, float]:
    """For each column with values (URL columns left out): values per distinct value, per token for ``token_seq``."""
    if not columns:
        return {}
    frame = read_columns(path, [c.name for c in columns], config["field_separator"], config["encoding"])
    shared = {}
    for column in columns:
        values = frame[column.name].str.strip()
        values = values[values != ""]
        if values.empty or values.str.match(r"https?://").mean() > 0.5:
            continue
        if column.type == "token_seq":
            values = values.str.split(config["seq_separator"]).explode()
            values = values[values != ""]
        shared[column.name] = len(values) / max(values.nunique(), 1)
    return shared

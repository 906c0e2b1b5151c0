"""Loading ``torch.export`` programs (``.pt2``) without unpickling anything unrestricted.

A ``.pt2`` file is a zip archive (``torch.export.save``) whose entries sit under one root folder:

```
<root>/archive_format            "pt2"
<root>/archive_version           "0"
<root>/models/model.json         the serialized graph (JSON, no pickle)
<root>/data/weights/model_weights_config.json     weight name -> payload file, dtype, shape
<root>/data/weights/weight_<i>                    raw tensor bytes (pickled only for subclasses)
<root>/data/constants/model_constants_config.json constants likewise (tensor_<i>, custom_obj_<i>,
                                                  opaque_obj_<i>)
<root>/data/sample_inputs/model.pt                torch.save'd example inputs (a pickle)
<root>/extra/<name>                               extra files (the sareval card: sareval_card.json)
```

``torch.export.load`` in torch 2.13 unpickles several of these with ``weights_only=False``
(the sample inputs after a failed weights-only attempt, pickled weights and constants,
``opaque_obj_`` constants with plain ``pickle.loads``), so a crafted archive runs code. Here:

- :func:`read_extra_file` reads an extra file straight from the zip: no deserialisation at all
  (``sareval info``, ``card check`` and card reading use it);
- :func:`load_program` rebuilds the program from the graph JSON and the raw weight bytes with
  torch's deserializer, never reads the sample inputs, loads a pickled payload only with
  ``torch.load(weights_only=True)``, and refuses custom (TorchBind) and opaque objects and
  AOTInductor packages. A refused or unreadable archive is an :class:`InputFileError`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from sareval.errors import InputFileError

MODEL_NAME = "model"  # torch.export.save writes the program under this name


def _root(names: list[str], path: Path) -> str:
    """The archive's root folder (``<root>/archive_format`` exists)."""
    for name in names:
        if name.endswith("/archive_format") and name.count("/") == 1:
            return name[: -len("archive_format")]
    raise InputFileError(path, "not a torch.export .pt2 archive (no archive_format entry)")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise InputFileError(path, f"not a readable torch.export .pt2 archive ({e})") from None


def read_extra_file(path: str | Path, name: str) -> str | None:
    """The text of ``extra/<name>`` in a ``.pt2`` archive, or None; reads the zip only."""
    path = Path(path)
    with _open_zip(path) as z:
        names = z.namelist()
        entry = _root(names, path) + "extra/" + name
        if entry not in names:
            return None
        try:
            return z.read(entry).decode("utf-8")
        except (UnicodeDecodeError, zipfile.BadZipFile, OSError) as e:
            raise InputFileError(path, f"extra file {name!r} is unreadable ({e})") from None


def load_program(path: str | Path) -> Any:
    """The :class:`torch.export.ExportedProgram` of a ``.pt2`` file (see module docstring)."""
    path = Path(path)
    try:
        return _load_program(path)
    except InputFileError:
        raise
    except Exception as e:  # torch's deserializer raises many kinds on malformed archives
        first = " ".join(str(e).split())[:200]
        raise InputFileError(
            path, f"not a readable torch.export program ({type(e).__name__}: {first})"
        ) from None


def _load_program(path: Path) -> Any:
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive import _package as pkg
    from torch.export.pt2_archive import constants as c

    with _open_zip(path) as z:
        names = z.namelist()
        root = _root(names, path)
        for name in names:
            rel = name[len(root) :]
            if rel.startswith((c.AOTINDUCTOR_DIR, c.EXECUTORCH_DIR, c.MTIA_DIR)):
                raise InputFileError(
                    path,
                    f"refused: the archive holds compiled code ({rel}); only plain "
                    "torch.export programs are loaded",
                )
        if root + c.MODELS_FILENAME_FORMAT.format(MODEL_NAME) not in names:
            raise InputFileError(path, "not a torch.export program (no models/model.json)")
    with pkg.PT2ArchiveReader(str(path)) as reader:
        version = reader.read_string(c.ARCHIVE_VERSION_PATH)
        if version != c.ARCHIVE_VERSION_VALUE:
            raise InputFileError(path, f"unsupported .pt2 archive version {version!r}")
        program = _bytes_to_dataclass(
            schema.ExportedProgram, reader.read_bytes(c.MODELS_FILENAME_FORMAT.format(MODEL_NAME))
        )
        state_dict = _payloads(reader, path, weights=True)
        constants = _payloads(reader, path, weights=False)
    # b"" example inputs: the deserializer then leaves them unset (they are never unpickled)
    return ExportedProgramDeserializer(None).deserialize(program, state_dict, constants, b"")


def _payloads(reader: Any, path: Path, *, weights: bool) -> dict[str, Any]:
    """Weights (or constants) by name: raw bytes viewed as tensors; pickles weights-only."""
    import torch
    from torch.export.pt2_archive import _package as pkg
    from torch.export.pt2_archive import constants as c

    folder = c.WEIGHTS_DIR if weights else c.CONSTANTS_DIR
    config_name = (
        c.WEIGHTS_CONFIG_FILENAME_FORMAT if weights else c.CONSTANTS_CONFIG_FILENAME_FORMAT
    ).format(MODEL_NAME)
    files = reader.get_file_names()
    if config_name not in files:
        if f"{folder}{MODEL_NAME}.pt" in files:  # legacy archives: one pickle of everything
            raise InputFileError(
                path, "refused: legacy .pt2 archive with pickled weights; re-export it"
            )
        raise InputFileError(path, f"not a torch.export program (no {config_name})")
    config = pkg._load_payload_config(reader, config_name)
    file_map = pkg._build_file_map(reader, config, folder)
    out: dict[str, Any] = {}
    for fqn, meta in config.config.items():
        name = meta.path_name
        if name.startswith((c.CUSTOM_OBJ_FILENAME_PREFIX, c.OPAQUE_OBJ_FILENAME_PREFIX)):
            raise InputFileError(
                path, f"refused: constant {fqn!r} is a pickled Python object ({name})"
            )
        if meta.use_pickle:
            data = reader.read_bytes(folder + name)
            try:
                out[fqn] = torch.load(io.BytesIO(data), weights_only=True)
            except Exception:
                raise InputFileError(
                    path,
                    f"refused: payload {name!r} is a pickle that weights-only loading "
                    "rejects (it could run code)",
                ) from None
            continue
        tm = meta.tensor_meta
        if tm is None:
            raise InputFileError(path, f"payload {name!r} has no tensor metadata")
        tensor = torch.as_strided(
            file_map[name],
            size=pkg.deserialize_size(tm.sizes),
            stride=pkg.deserialize_stride(tm.strides),
            storage_offset=pkg.deserialize_storage_offset(tm.storage_offset),
        )
        if weights and meta.is_param:
            tensor = torch.nn.Parameter(tensor, requires_grad=tm.requires_grad)
        out[fqn] = tensor
    return out

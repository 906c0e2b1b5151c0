"""Absence operators other than ``fill``: backends that run the coalitions of a batch with the
absent players omitted, masked or imputed (``ShapeConfig.game.absence``).

Every backend has :class:`~sareval.evaluator.backends.TorchBackend`'s interface (``name``
``"torch"``, ``device``, ``providers``, ``share``, ``run(raw, mask=None) -> (n, B, K)``,
``run_tensor``, ``close``); ``mask`` (n, C) bool channel masks (a slice of ``pre.masks``, or
``pre.empty_mask()``). With ``x = normalise(raw)`` (B, C, H, W) the card's normalised channels
(:func:`~sareval.normalization.normalise_torch`), read and normalised ONCE per batch::

    fill      x_k = where(mask_k, x, baseline)           TorchBackend / OnnxRuntimeBackend
    mask      out = f(repeat_n(x), present)              ONE call (a card with several inputs:
                                                         f(inputs of repeat_n(x), present));
                                                         present[k B + b, m] =
                                                         all(mask_k[channels of modality m])
    omit      out_k = f(inputs of x present in mask_k)   one call per coalition:
                dict card        f({name: x[:, input]  for present inputs})
                positional card  f(x[:, in_1] or None, x[:, in_2] or None, ...)
                one input        f(x[:, on_k], central_wavelengths(channels on_k))
    marginal  x_{k,d,b} = where(mask_k, x_b, donor_{r(d, b)})   r(d, b) = draw d of sample b
              out (n, D B, K): row d B + b = draw d of sample b (the batch repeated D times)

``mask``: absent channels keep their real values (the model's mask must hide them), so that a
model that ignores its mask is seen by :func:`check_mask_used`. ``omit``: an input is present
when all its channels are on; a model that raises with an input left out is a one-line error
naming the inputs (or bands) left out and the coalition; the empty coalition (every input left
out) is called like any other and fails the same way for a model that needs one input (the
message then says to use ``ShapeConfig.game.empty_coalition 'majority'``).
``marginal``: the donor pool (raw arrays per sensor, P >= 2 samples, :func:`read_donors`) is
normalised once; the donors of the sample at global position ``i`` are
``np.random.default_rng([seed mod 2**64, i]).integers(0, P, draws)`` (:func:`donor_rows`), so
a sample gets the same donors whatever the batch size, shard or coalition chunk. A sample in
the pool may draw itself (probability 1 / P per draw). Counting the (n, D B, K) outputs
against the labels repeated D times (``np.tile(y, draws)``) counts every draw as a sample
replicate: V(S) is the mean over the draws. The same holds for every output the runner keeps:
``map_*`` scores (D B rows, labels tiled: AP over all draws), segmentation (donors are whole
images, input channels only; pixel confusion matrices summed over the draws, each image's
per-image matrices the sum over its own draws) and ``per_sample`` values (a sample's Shapley
values and detector scores: the means over its draws of each draw's; ``correct``: right in
every draw of the full coalition, whose input has no donor part). Bootstrap intervals resample
samples (images) with all their draws. Refused: ``map_*`` with shards, and a segmentation
model's relevance maps (``per_sample``) and maps file (``save_predictions``).

The networks run eagerly in fp32 under ``torch.inference_mode`` (no padding, no sharing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sareval.bands import central_wavelengths
from sareval.card import ModelCard
from sareval.choices import ABSENCES
from sareval.errors import SarevalError
from sareval.evaluator.backends import check_outputs
from sareval.evaluator.coalitions import coalition_name
from sareval.evaluator.preamble import Preamble
from sareval.normalization import normalise_torch, torch_constants, torch_flags

WHERE = "ShapeConfig.game.absence"
#: donor draws per sample of ``marginal`` (the runner's default)
MARGINAL_DRAWS = 8
#: donor pool size of ``marginal`` (samples read once, :func:`read_donors`)
MARGINAL_POOL = 256


# --- the rules ----------------------------------------------------------------------------------
def _owners(card: ModelCard, players: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    """Band -> its player (``players``, or the card's modalities)."""
    given = players if players is not None else {m.name: m.bands for m in card.modalities}
    return {b: p for p, bands in given.items() for b in bands}


def _split(owner: Mapping[str, str], units: Mapping[str, Sequence[str]]) -> list[str]:
    """Units (model inputs or modalities) whose bands belong to more than one player."""
    return [u for u, bands in units.items() if len({owner[b] for b in bands}) > 1]


def check_absence(
    absence: str, card: ModelCard, players: Mapping[str, Sequence[str]] | None = None
) -> None:
    """Refuse an absence operator the model cannot take, in one line naming
    ``ShapeConfig.game.absence``: one not in ``card.absence``; ``mask`` with a player holding
    part of a modality (the mask is per modality); ``omit``
    with a player holding part of a model input, or on a one-input card whose bands have no
    central wavelength. ``players``: ``ShapeConfig.game.player_map`` (None: the modalities)."""
    if absence not in ABSENCES:
        raise SarevalError(f"{WHERE}: {absence!r} is not one of {', '.join(ABSENCES)}")
    if absence not in card.absence:
        raise SarevalError(
            f"{WHERE}: {absence!r} is not supported by the model (its card's absence: "
            f"{', '.join(card.absence)})"
        )
    owner = _owners(card, players)
    if absence == "mask":
        split = _split(owner, {m.name: m.bands for m in card.modalities})
        if split:
            raise SarevalError(
                f"{WHERE}: 'mask' takes whole modalities, but ShapeConfig.game.players splits "
                f"modality {', '.join(split)} between players"
            )
    elif absence == "omit":
        if card.input_tensors:
            inputs = {n: card.channels[sl] for n, sl in card.input_slices()}
            split = _split(owner, inputs)
            if split:
                raise SarevalError(
                    f"{WHERE}: 'omit' leaves out whole model inputs, but input "
                    f"{', '.join(split)} holds bands of several players"
                )
        else:
            try:
                central_wavelengths(card.channels)
            except SarevalError as e:
                raise SarevalError(
                    f"{WHERE}: 'omit' on a one-input model gives it the wavelengths of the bands "
                    f"present; {e}"
                ) from None


# --- shared machinery ---------------------------------------------------------------------------
class _AbsenceBackend:
    """Device, the once-per-batch normalisation, output checks and mode restoring."""

    name = "torch"
    absence = ""
    share: str | None = None

    def __init__(self, network: Any, pre: Preamble, card: ModelCard, device: str,
                 source: str) -> None:  # fmt: skip
        import torch

        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SarevalError(
                f"ShapeConfig.execution.device {device!r}: torch sees no CUDA device"
            )
        if tuple(card.channels) != tuple(pre.channels):
            raise SarevalError(f"{source}: the card's channels are not the preamble's")
        self.network, self.pre, self.card, self.source = network, pre, card, source
        self.n_classes = card.n_classes
        self.providers = [str(self.device)]
        self.cuda = self.device.type == "cuda"
        modules = network.modules() if hasattr(network, "modules") else []
        self._modes = [(m, m.training) for m in modules]
        for m, _ in self._modes:
            m.training = False
        self._k = {n: torch.from_numpy(v).to(self.device) for n, v in torch_constants(pre).items()}
        self._flags = torch_flags(pre)
        self._player_channels = [np.array(card.channel_indices(p)) for p in card.modality_names]

    def normalise(self, raw: Mapping[str, Any]) -> Any:
        """The card's normalised channels (B, C, H, W) float32 on the device."""
        import torch

        tensors = {
            s: raw[s].to(self.device)
            if isinstance(raw[s], torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(raw[s])).to(self.device)
            for s in self.pre.sensors
        }
        return normalise_torch(tensors, self.pre.sensors, self._k, self._flags)

    def masks(self, mask: np.ndarray | None) -> np.ndarray:
        """``mask`` as (n, C) bool (default: every non-empty coalition of the preamble)."""
        m = self.pre.masks if mask is None else np.asarray(mask, dtype=bool)
        if m.ndim != 2 or m.shape[1] != self.pre.n_channels:
            raise SarevalError(
                f"mask: expected (n, {self.pre.n_channels}) bool channel masks; got {m.shape}"
            )
        return m

    def coalition(self, row: np.ndarray) -> str:
        """The name of the players present in a mask row (all their channels on)."""
        present = frozenset(p for p, ch in zip(self.card.modality_names, self._player_channels,
                                               strict=True) if row[ch].all())  # fmt: skip
        return coalition_name(present, self.card.modality_names)

    def check(self, out: Any, rows: int, hw: tuple[int, int]) -> None:
        import torch

        spatial = hw if self.card.is_segmentation else None
        check_outputs(out, rows, self.n_classes, self.source, array_type=torch.Tensor,
                      spatial=spatial)  # fmt: skip

    def run_tensor(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> Any:
        raise NotImplementedError

    def run(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
        """Outputs (n, B, K) float32 on the host."""
        return self.run_tensor(raw, mask).cpu().numpy()  # type: ignore[no-any-return]

    def close(self) -> None:
        for module, training in self._modes:
            module.training = training


def call_network(network: Any, x: Any, pre: Preamble, *extra: Any) -> Any:
    """``network`` on the channel batch ``x`` (rows, C, H, W) split into the card's inputs
    and called as the card says (the call of :class:`~sareval.evaluator.preamble.
    CoalitionModule`), ``extra`` arguments after them (``mask``: ``present``)."""
    if len(pre.inputs) == 1:
        return network(x, *extra)
    parts = {n: x[:, sl] for n, sl in pre.inputs}
    if pre.call == "dict":
        return network(parts, *extra)
    return network(*parts.values(), *extra)


# --- mask ---------------------------------------------------------------------------------------
class MaskAbsenceBackend(_AbsenceBackend):
    """``network(x, present)`` once per execution: every coalition's rows in one batch, the
    presence of each modality varying per row (module docstring).

    ``card``: the evaluated card (its modalities: the players); ``model_card``: the model's own
    card, whose modalities are the columns of ``present`` (default ``card``)."""

    absence = "mask"

    def __init__(self, network: Any, pre: Preamble, card: ModelCard, device: str = "cpu", *,
                 model_card: ModelCard | None = None, source: str = "model") -> None:  # fmt: skip
        super().__init__(network, pre, card, device, source)
        model_card = card if model_card is None else model_card
        self.modalities = model_card.modality_names
        self.groups = [np.array(model_card.channel_indices(m)) for m in self.modalities]

    def present(self, mask: np.ndarray) -> np.ndarray:
        """(n, M) bool: modality m present in row k when all its channels are on; a row with
        part of a modality on is refused."""
        parts = [mask[:, g] for g in self.groups]
        split = [m for m, p in zip(self.modalities, parts, strict=True)
                 if (p.any(1) & ~p.all(1)).any()]  # fmt: skip
        if split:
            raise SarevalError(
                f"{WHERE}: 'mask' takes whole modalities, but a coalition holds part of "
                f"modality {', '.join(split)}"
            )
        return np.stack([p.all(1) for p in parts], 1)

    def run_tensor(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> Any:
        """Outputs (n, B, K) on the device, from ONE call of the network."""
        import torch

        m = self.masks(mask)
        present = torch.from_numpy(self.present(m)).to(self.device)
        with torch.inference_mode():
            x = self.normalise(raw)
            b, n = x.shape[0], len(m)
            rows = x.repeat(n, 1, 1, 1)
            out = call_network(self.network, rows, self.pre, present.repeat_interleave(b, 0))
        self.check(out, n * b, tuple(x.shape[2:]))
        return out.float().reshape(n, b, *out.shape[1:])


def check_mask_used(backend: MaskAbsenceBackend, raw: Mapping[str, np.ndarray]) -> None:
    """Refuse a model whose outputs on ``raw`` (the first batch) are identical, for every row,
    with every modality present and with any one of them absent: it ignores its mask."""
    import torch

    full = np.ones(backend.pre.n_channels, dtype=bool)
    rows = [full]
    for g in backend.groups:
        row = full.copy()
        row[g] = False
        rows.append(row)
    out = backend.run_tensor(raw, np.stack(rows))
    if all(torch.equal(out[0], out[i]) for i in range(1, len(rows))):
        raise SarevalError(
            f"{backend.source}: the model's outputs do not change with its mask input (every "
            "sample of the first batch gives the same outputs with each modality absent as "
            f"with all present); it ignores the mask, so {WHERE} 'mask' would measure nothing"
        )


# --- omit ---------------------------------------------------------------------------------------
class OmitAbsenceBackend(_AbsenceBackend):
    """One network call per coalition with the absent inputs left out (module docstring);
    ``calls_per_batch``: the calls a batch of every coalition takes (for the plan line)."""

    absence = "omit"

    def __init__(self, network: Any, pre: Preamble, card: ModelCard, device: str = "cpu", *,
                 source: str = "model") -> None:  # fmt: skip
        import torch

        super().__init__(network, pre, card, device, source)
        self.single = len(pre.inputs) == 1
        self.wavelengths = None
        if self.single:
            um = central_wavelengths(pre.channels)
            self.wavelengths = torch.tensor(um, dtype=torch.float32, device=self.device)
        self.calls_per_batch = pre.n_coalitions

    def _arguments(self, x: Any, row: np.ndarray) -> tuple[tuple[Any, ...], list[str]]:
        """The call's arguments for mask ``row`` and what is left out (inputs or bands)."""
        import torch

        pre = self.pre
        if self.single:
            assert self.wavelengths is not None
            on = torch.from_numpy(np.flatnonzero(row)).to(self.device)
            left = [b for b, o in zip(pre.channels, row, strict=True) if not o]
            return (x.index_select(1, on), self.wavelengths.index_select(0, on)), left
        given: dict[str, Any] = {}
        for name, sl in pre.inputs:
            if row[sl].all():
                given[name] = x[:, sl]
            elif row[sl].any():
                raise SarevalError(
                    f"{WHERE}: 'omit' leaves out whole model inputs, but coalition "
                    f"{self.coalition(row)} holds part of input {name!r}"
                )
        left = [n for n, _ in pre.inputs if n not in given]
        if pre.call == "dict":
            return (given,), left
        return tuple(given.get(n) for n, _ in pre.inputs), left

    def run_tensor(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None) -> Any:
        """Outputs (n, B, K) on the device, one network call per mask row."""
        import torch

        m = self.masks(mask)
        outs = []
        with torch.inference_mode():
            x = self.normalise(raw)
            for row in m:
                args, left = self._arguments(x, row)
                try:
                    out = self.network(*args)
                except Exception as e:
                    if not left:
                        raise
                    raise SarevalError(self._failure(row, left, e)) from None
                self.check(out, x.shape[0], tuple(x.shape[2:]))
                outs.append(out.float())
        return torch.stack(outs)

    def _failure(self, row: np.ndarray, left: list[str], e: Exception) -> str:
        what = "band(s)" if self.single else "input(s)"
        name = self.coalition(row)
        detail = (str(e).splitlines() or [""])[0][:200]
        hint = ""
        if not row.any():
            hint = "; use ShapeConfig.game.empty_coalition 'majority'"
        return (
            f"{self.source}: fails with {what} {', '.join(left)} left out (coalition {name}): "
            f"{type(e).__name__}: {detail}{hint}"
        )


# --- marginal -----------------------------------------------------------------------------------
def donor_rows(positions: Sequence[int] | np.ndarray, pool: int, draws: int,
               seed: int) -> np.ndarray:  # fmt: skip
    """(draws, B) donor indices: column b is
    ``np.random.default_rng([seed mod 2**64, positions[b]]).integers(0, pool, draws)``."""
    key = seed % 2**64
    cols = [np.random.default_rng([key, int(i)]).integers(0, pool, draws) for i in positions]
    return np.stack(cols, 1) if cols else np.zeros((draws, 0), dtype=np.int64)


def read_donors(source: Any, labels: Any, sensors: Sequence[str], size: int = MARGINAL_POOL,
                seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """The donor pool of ``marginal``: raw arrays per sensor of ``min(size, N)`` samples of
    ``source`` (a :class:`~sareval.evaluator.sources.Source` of N samples) at the sorted
    positions ``np.random.default_rng(seed mod 2**64).choice(N, ..., replace=False)``, read
    once; returns (arrays, positions). Data of fewer than 2 samples (or of unknown length) is
    refused."""
    try:
        n = len(source)
    except SarevalError:
        raise SarevalError(
            f"{WHERE} 'marginal': needs data with a length (a map-style Dataset) for its donors"
        ) from None
    if n < 2:
        raise SarevalError(
            f"{WHERE} 'marginal': {source.description} has {n} sample(s); marginal imputation "
            "takes absent inputs from other samples and needs at least 2"
        )
    rng = np.random.default_rng(seed % 2**64)
    positions = np.sort(rng.choice(n, min(size, n), replace=False))
    parts: dict[str, list[np.ndarray]] = {s: [] for s in sensors}
    for p in positions:
        batches = source.batches(int(p), int(p) + 1, 1, sensors=sensors, labels=labels,
                                 queue_size=1)  # fmt: skip
        with batches as stream:
            for batch in stream:
                for s in sensors:
                    parts[s].append(np.array(batch.arrays[s][:1]))
    return {s: np.concatenate(v) for s, v in parts.items()}, positions


class MarginalAbsenceBackend(_AbsenceBackend):
    """The fill graph with each row's baseline replaced by a donor sample's normalised values,
    ``draws`` donors per sample (module docstring); outputs (n, draws * B, K), row d B + b
    (segmentation: (n, draws * B, K, h, w)).

    ``donors``: raw arrays per sensor of the pool (P >= 2 samples, read once by the caller);
    ``record``: what the results record (draws, pool size, seed)."""

    absence = "marginal"

    def __init__(self, network: Any, pre: Preamble, card: ModelCard, device: str = "cpu", *,
                 donors: Mapping[str, np.ndarray], draws: int = MARGINAL_DRAWS, seed: int = 0,
                 source: str = "model") -> None:  # fmt: skip
        super().__init__(network, pre, card, device, source)
        missing = [s for s in pre.sensors if s not in donors]
        if missing:
            raise SarevalError(f"{WHERE} 'marginal': the donor pool has no sensor {missing}")
        sizes = {len(donors[s]) for s in pre.sensors}
        if len(sizes) != 1:
            raise SarevalError(f"{WHERE} 'marginal': the donor pool's sensors differ in length")
        pool = sizes.pop()
        if pool < 2:
            raise SarevalError(
                f"{WHERE} 'marginal': the donor pool has {pool} sample(s); marginal imputation "
                "takes absent inputs from other samples and needs at least 2"
            )
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise SarevalError(f"{WHERE} 'marginal': draws must be an integer >= 1, got {draws!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SarevalError(f"{WHERE} 'marginal': seed must be an integer, got {seed!r}")
        import torch

        with torch.inference_mode():
            self.donors = self.normalise(donors)  # (P, C, H, W)
        self.pool, self.draws, self.seed = pool, draws, seed
        self.record = {"draws": draws, "pool": pool, "seed": seed}

    def run_tensor(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None,
                   positions: Sequence[int] | np.ndarray | None = None) -> Any:  # fmt: skip
        """Outputs (n, draws * B, K) on the device; ``positions``: the samples' global
        positions, which key their donors (default ``0 .. B - 1``)."""
        import torch

        m = self.masks(mask)
        with torch.inference_mode():
            x = self.normalise(raw)
            b, n = x.shape[0], len(m)
            pos = np.arange(b) if positions is None else np.asarray(positions)
            if len(pos) != b:
                raise SarevalError(f"positions: {len(pos)} for a batch of {b} samples")
            rows = torch.from_numpy(donor_rows(pos, self.pool, self.draws, self.seed))
            donor = self.donors[rows.to(self.device)]  # (D, B, C, H, W)
            on = torch.from_numpy(m).to(self.device)[:, None, None, :, None, None]
            stacked = torch.where(on, x[None, None], donor[None])  # (n, D, B, C, H, W)
            out = call_network(self.network, stacked.reshape(-1, *x.shape[1:]), self.pre)
        self.check(out, n * self.draws * b, tuple(x.shape[2:]))
        return out.float().reshape(n, self.draws * b, *out.shape[1:])

    def run(self, raw: Mapping[str, np.ndarray], mask: np.ndarray | None = None,
            positions: Sequence[int] | np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Outputs (n, draws * B, K) float32 on the host."""
        return self.run_tensor(raw, mask, positions).cpu().numpy()  # type: ignore[no-any-return]


# --- an ONNX model as a network -------------------------------------------------------------
class OnnxNetwork:
    """An ONNX model (not composed with the preamble) called like a torch network:
    ``net(*inputs) -> tensor`` with the graph's inputs in order (for a ``mask`` model
    ``(x, present)``, :data:`~sareval.card.PRESENT_INPUT`), on onnxruntime's CPU or CUDA
    provider; so the absence backends run an exported ``mask`` model in ONE graph call per
    execution. An input left out (``None``: ``omit``) is refused: an ONNX graph has fixed inputs.
    """

    def __init__(self, path: str | Path, device: str, source: str) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise SarevalError(f"{source}: onnxruntime cannot load the model ({e})") from None
        if self.session.get_providers()[0] != providers[0]:
            raise SarevalError(f"{source}: onnxruntime did not load {providers[0]}")
        self.names = [i.name for i in self.session.get_inputs()]
        self.source = source

    def __call__(self, *inputs: Any) -> Any:
        import torch

        if len(inputs) != len(self.names) or any(x is None for x in inputs):
            raise SarevalError(
                f"{self.source}: the ONNX graph takes inputs {self.names}; {WHERE} 'omit' runs "
                "torch modules only"
            )
        feeds = {n: x.detach().cpu().numpy() for n, x in zip(self.names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


# --- the factory --------------------------------------------------------------------------------
def make_absence_backend(
    absence: str,
    network: Any,
    pre: Preamble,
    card: ModelCard,
    device: str = "cpu",
    *,
    donors: Mapping[str, np.ndarray] | None = None,
    draws: int = MARGINAL_DRAWS,
    seed: int = 0,
    model_card: ModelCard | None = None,
    source: str = "model",
) -> MaskAbsenceBackend | OmitAbsenceBackend | MarginalAbsenceBackend | None:
    """The backend of ``absence`` (None for ``fill``: the usual backends); ``network``: the
    bare torch network on ``device`` (:func:`~sareval.evaluator.backends.load_torch_module`).
    Checked with :func:`check_absence`: ``model_card`` (the model's own card; default
    ``card``) against the players, ``card``'s modalities."""
    check_absence(absence, model_card or card, {m.name: m.bands for m in card.modalities})
    if absence == "fill":
        return None
    if absence == "mask":
        return MaskAbsenceBackend(network, pre, card, device, model_card=model_card, source=source)
    if absence == "omit":
        return OmitAbsenceBackend(network, pre, card, device, source=source)
    if donors is None:
        raise SarevalError(f"{WHERE} 'marginal': needs a donor pool (raw arrays per sensor)")
    return MarginalAbsenceBackend(
        network, pre, card, device, donors=donors, draws=draws, seed=seed, source=source
    )


__all__ = [
    "MARGINAL_DRAWS",
    "MARGINAL_POOL",
    "MarginalAbsenceBackend",
    "MaskAbsenceBackend",
    "OmitAbsenceBackend",
    "call_network",
    "check_absence",
    "check_mask_used",
    "donor_rows",
    "make_absence_backend",
    "read_donors",
]

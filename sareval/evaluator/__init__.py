"""The SHAPE evaluator: coalition games over modalities, metrics from counts, relevance.

Pure-math core (numpy only):

- :mod:`~sareval.evaluator.coalitions`: the 2^M coalitions, their order and names
  (``"sar+opt"``, ``"none"``).
- :mod:`~sareval.evaluator.metrics`: integer counts per coalition that merge by summation
  (:class:`SingleLabelCounts`, :class:`MultiLabelCounts`), metrics as pure functions of them,
  decision rules (:func:`decide`) and near-ties (:func:`ties`).
- :mod:`~sareval.evaluator.shapley`: exact Shapley values, SHAPE scores (Z = 1 or V(M)) and
  cooperation, for mappings or arrays of games.
- :mod:`~sareval.evaluator.relevance`: counts per coalition -> V per metric -> relevance, per
  class and per cloud-cover bin.
- :mod:`~sareval.evaluator.bootstrap`: paired bootstrap intervals from per-sample decisions.

Execution (torch, onnx and onnxruntime are imported only when used):

- :func:`~sareval.evaluator.runner.run_evaluation` behind :func:`sareval.evaluate`: the
  streaming pass over a data source (:mod:`~sareval.evaluator.sources`,
  :mod:`~sareval.evaluator.reader` thread, :mod:`~sareval.evaluator.counting`) under a
  :class:`~sareval.evaluator.config.ShapeConfig`.
- :mod:`~sareval.evaluator.preamble`: raw store batch -> every coalition's network input, as
  numpy, an ONNX graph composed with the model, or a torch module;
  :mod:`~sareval.evaluator.backends`: onnxruntime and torch.
- :mod:`~sareval.evaluator.results` (+ ``results.schema.json``), :mod:`~sareval.evaluator.merge`,
  :mod:`~sareval.evaluator.distributed`, :mod:`~sareval.evaluator.perceptual`,
  :mod:`~sareval.evaluator.predictions`; :mod:`~sareval.evaluator.embedded`: the states a shard
  embeds in its results for ``merge``.

The public entry points are :func:`sareval.evaluate` and :class:`sareval.ShapeConfig`; the
functions above are imported from their modules (this package re-exports nothing, so that
importing one module does not import them all).
"""

from __future__ import annotations

__all__: list[str] = []

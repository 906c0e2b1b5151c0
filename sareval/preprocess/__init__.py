"""Dataset readers (GeoTIFF trees -> HDF5 store), cloud cover, and the synthetic generators.

Modules import rasterio only where they read or write GeoTIFFs, never at package level.

- :mod:`sareval.preprocess.synth_scene`: the shared signal model of the synthetic datasets
  (class signatures, class maps, speckle, clouds, snow).
- :mod:`sareval.preprocess.synth_sen12ms`: ``generate_sen12ms`` (SEN12MS + SEN12MS-CR trees).
- :mod:`sareval.preprocess.synth_bigearthnet`: ``generate_bigearthnet`` (BigEarthNet S2 + S1).
"""

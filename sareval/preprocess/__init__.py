"""Dataset readers (GeoTIFF trees -> HDF5 store), cloud cover, and the synthetic generators.

Modules import rasterio only where they read or write GeoTIFFs, never at package level.

- :mod:`sareval.preprocess.synth_scene`: the shared signal model of the synthetic datasets
  (class signatures, class maps, speckle, clouds, snow).
- :mod:`sareval.preprocess.synth_sen12ms`: ``generate_sen12ms`` (SEN12MS + SEN12MS-CR trees).
- :mod:`sareval.preprocess.synth_bigearthnet`: ``generate_bigearthnet`` (BigEarthNet S2 + S1).
- :mod:`sareval.preprocess.synth_bigearthnet_v2`: ``generate_bigearthnet_v2`` (reBEN trees,
  reference maps and metadata parquets).
- :mod:`sareval.preprocess.synth_dfc2020`: ``generate_dfc2020`` (DFC2020 validation and test
  releases with their dfc label maps).
- :mod:`sareval.preprocess.dfc2020`: the DFC2020 reader (``preprocess_dfc2020``).
"""

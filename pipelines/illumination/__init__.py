"""Even illumination: flatfield estimation and correction, intensity matching between tiles.

`estimate` (pure: per-pixel histograms → S and T), `fields` (S.tif / T.tif on disk),
`correct` (applied on executors while a tile region is read), `intensity` (per-tile gain
and offset from the overlapping pairs), `tasks` (executor functions), `plan` (checks and
the plan's `Correction`). The driver's side over any executor is `pipelines.corrections`,
beside the driver: it plans, runs tasks and reports, so it sits above this package.
"""

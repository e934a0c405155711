"""Pictures of slices, maps and cards for the dashboard and the reports, drawn with numpy and PIL (no Streamlit):
`images` (encoding, overlays), `slice_images` (a run's slice, its maps and hover cards), `data_views` (the Data
page's first pages). The precompute stage (core/after_training.py) draws them into the run's feature cache, so a
page's first visit only reads."""

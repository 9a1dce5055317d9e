"""Build engines: one build skeleton (`build`) and the engines that turn videos into frames and vectors for it.

`build` owns the checks, the lock, the scan, the index, the writer (`writer`), progress and the summary;
`local` prepares frames in worker processes and encodes them here; `ray_engine` spreads the same stages
over Ray. `config` and `records` are the vocabulary they share.
"""

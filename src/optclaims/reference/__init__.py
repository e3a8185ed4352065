"""Reference results: what the suite found on a GPU, committed under ``results/reference/gpu/``.

One self-contained folder per claim (runs shared by two claims are stored in each, so a claim's
reference is always the one run of the gpu scale that made its verdict)::

    results/reference/gpu/<claim>/
        verdict.json  table.csv  *.csv  stage<n>.json    the claim's analysis outputs, as written
        figures/*.png figures/*.pdf                      PNG for the HTML report, PDF for papers
        runs/<run_id>/config.json summary.json metrics.parquet [eval.json]
                                                         what redraws every figure (zstd parquet)
        data/<data_id>/corpus/manifest.json tokens/shards.json
        provenance.json                                  commit, claim-code hash, device, driver,
                                                         torch/CUDA, corpus hash, wall time per
                                                         stage, date, tokens/s and MFU; sha256 of
                                                         every other file of the folder
    results/reference/gpu/report/report.md               the report of all of them (index.html
                                                         beside it, git-ignored)

``pack`` makes an archive of that shape from ``results/gpu`` (on the GPU host), ``filing`` checks one
and swaps each claim's folder in, ``claim_code`` says when a reference went stale, ``report`` and
``readme`` render them, ``baseline`` turns them into the nightly's gpu baseline.
"""

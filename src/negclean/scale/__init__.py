"""Scale-out: the same stages on Ray Data (``--engine ray``), for data that outgrows one process or machine.

- ``ray_judge.run_judge_ray``: `negclean judge` sharded over an actor pool (judges built once per worker).
- ``ray_mine.mine_ray``: `negclean mine` with corpus embedding and query shards on actor pools.
- ``stores``: how the judgment store stays the one source of truth across workers.

Nothing here imports Ray until a run starts (``pip install 'negclean[ray]'``). See docs/scale.md.
"""

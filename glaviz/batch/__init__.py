"""``glaviz batch``: many scenes through features and deploy on Dask distributed workers."""

from glaviz.batch.runner import BatchResult, run_batch

__all__ = ["BatchResult", "run_batch"]

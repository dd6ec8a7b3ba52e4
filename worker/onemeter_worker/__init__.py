"""The RQ side of OneMeter: the worker process and the functions jobs run.

Job functions are plain importable functions that take ids, never objects (STYLE.md).
"""

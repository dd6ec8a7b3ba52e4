"""Job functions of the core; plugins declare theirs through `onemeter_job_kinds`."""

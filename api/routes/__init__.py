"""One router per resource: health, datasets, jobs, streams."""

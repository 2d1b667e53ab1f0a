"""Many machines: Ray Data batch jobs, GPU inventory and placement (built on pipeline/)."""

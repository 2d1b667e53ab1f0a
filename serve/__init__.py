"""Ray Serve deployments for whisperx-serve (built on pipeline/)."""

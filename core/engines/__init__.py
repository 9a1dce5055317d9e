"""Build engines: how the stages of a build (prepare frames → encode → write) are spread over processes.

`local` runs them on this machine: worker processes prepare frames, this process encodes, a thread writes.
"""

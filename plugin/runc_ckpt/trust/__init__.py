"""Who made a checkpoint, whether this host may restore it, and who may read it.

A checkpoint is a process's memory: restoring one runs code chosen by whoever
wrote it, and its pages hold the process's secrets. This layer signs what we
package (sigstore keys, containers-policy.json(5) vocabulary), decides by
policy whether a restore may go on, and encrypts memory at rest and in flight
(ocicrypt's scheme: JWE-wrapped keys). It sits below archive/ (which hashes
and seals as it writes) and above runtime/.
"""

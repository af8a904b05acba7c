"""Errors that mean "nothing will work on this node", whichever model raised them.

A TTS backend, a captioner, the CTC aligner, a diarizer or QC's recognizer that cannot start (its
package, model folder or device missing) raises a `BackendSetupError` subclass: the run stops with
the message, before rows are marked failed, instead of retrying rows that cannot succeed.
"""

from __future__ import annotations


class BackendSetupError(RuntimeError):
    """A model cannot start here (package, model folder or device missing): stop the run, say how to fix it."""

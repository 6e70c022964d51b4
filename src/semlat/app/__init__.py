"""``semlat app``: a local web app (Gradio) to hear, see and compare latent spaces and generators.

The package is split by job: :mod:`.catalog` finds model folders, manifests and reports under the
folders the app serves; :mod:`.guard` checks every path and upload that comes from a request;
:mod:`.models` loads each model once and shares it between users; :mod:`.actions` does the work
(reconstruct and score, latent diagnostics, TTS, text-to-audio, reports) without any UI, drawing with
:mod:`semlat.evaluation.plots`; :mod:`.ui` is the Gradio front end and :func:`.ui.launch` starts it.
Only :mod:`.ui` imports gradio (the ``semlat[app]`` extra).
"""

"""The actions a runbook step can name.

``engine.actions.catalog`` says what validation needs to know about them (names, output types,
whether they change anything) and imports nothing else, so ``runbook validate`` starts fast;
``engine.actions.registry`` binds each name to its implementation for the executor.
"""

"""atheris harnesses for the gateway's pure parsers (run by ``scripts/fuzz.py``,
``make fuzz``); not collected by pytest (their files are named ``fuzz_*``)."""

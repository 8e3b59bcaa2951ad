"""``python -m proxy.mock_provider``: run the mock provider."""

from proxy.mock_provider.server import main

main()

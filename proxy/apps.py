from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Data plane"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from gateway_project.backend_calls import watch_connection

        connection_created.connect(watch_connection, dispatch_uid="gateway_backend_calls")

"""``/api/v1/`` addresses of the keys app."""

from rest_framework.routers import SimpleRouter

from keys.api import views

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("teams", views.TeamViewSet, basename="team")
router.register("virtual-keys", views.VirtualKeyViewSet, basename="virtual-key")
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("provider-keys", views.ProviderKeyViewSet, basename="provider-key")
router.register("routes", views.ModelRouteViewSet, basename="route")
router.register("role-assignments", views.RoleAssignmentViewSet, basename="role-assignment")
router.register("api-tokens", views.ApiTokenViewSet, basename="api-token")

urlpatterns = router.urls

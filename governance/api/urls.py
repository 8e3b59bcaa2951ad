"""``/api/v1/`` addresses of the governance app."""

from rest_framework.routers import SimpleRouter

from governance.api import views

router = SimpleRouter()
router.register("budgets", views.BudgetViewSet, basename="budget")
router.register("budget-periods", views.BudgetPeriodViewSet, basename="budget-period")
router.register("rate-limits", views.RateLimitViewSet, basename="rate-limit")
router.register("prices", views.ModelPriceViewSet, basename="price")
router.register("guardrail-policies", views.GuardrailPolicyViewSet, basename="guardrail-policy")
router.register("request-log", views.RequestLogViewSet, basename="request-log")
router.register("usage", views.UsageViewSet, basename="usage")

urlpatterns = router.urls

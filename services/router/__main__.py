from services.router.service import RouterService
from shared.service import run_service

run_service(RouterService)

from services.gateway.service import GatewayService
from shared.service import run_service

run_service(GatewayService)

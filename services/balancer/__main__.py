from services.balancer.service import BalancerService
from shared.service import run_service

run_service(BalancerService)

from services.recovery.service import RecoveryService
from shared.service import run_service

run_service(RecoveryService)

from services.workflow.service import WorkflowService
from shared.service import run_service

run_service(WorkflowService)

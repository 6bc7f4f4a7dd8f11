from kong.model.base import Base
from kong.model.folder import Folder
from kong.model.job import Job, JobStatus

__all__ = ["Base", "Folder", "Job", "JobStatus"]

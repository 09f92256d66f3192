"""Teachers: the bundled default digit CNN and loaders for user models (see docs/teachers.md)."""
from dfnas.teachers.loader import load_teacher
from dfnas.teachers.teacher import Teacher, TeacherInfo

__all__ = ["Teacher", "TeacherInfo", "load_teacher"]

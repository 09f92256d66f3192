"""Teachers: the bundled default digit CNN and loaders for user models (see docs/teachers.md)."""
from dfnas.teachers.loader import load_teacher
from dfnas.data.teacher_record import TeacherInfo
from dfnas.teachers.teacher import Teacher

__all__ = ["Teacher", "TeacherInfo", "load_teacher"]

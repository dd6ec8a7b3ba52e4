"""The one SQLAlchemy handle shared by the core and every plugin.

Models subclass `Model` (FAB's declarative base) so FAB's own tables live in the same metadata.
"""

from flask_appbuilder import Model
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy(model_class=Model)

__all__ = ["Model", "db"]

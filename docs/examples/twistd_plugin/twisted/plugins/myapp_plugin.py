# twistd finds this file in any twisted/plugins directory on sys.path (no __init__.py here).
from twisted.application.service import ServiceMaker

myapp = ServiceMaker("myapp", "myapp", "An application that follows its config in etcd", "myapp")

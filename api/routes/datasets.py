"""``/v1/datasets``: upload (streamed, vetted, de-duplicated per user), list, read, delete."""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status

from hm2bp_core.data import DatasetError, load_dataset
from worker.store import DatasetRow, new_id

from .. import schemas
from ..dataset_intake import SUFFIX, UploadRejected, inspect_archive, receive_upload
from ..deps import ServicesDep, UserDep, not_found
from ..errors import error_response

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

BUILTINS = {  # the core's built-ins (hm2bp_core.data.builtin), described without loading them
    "builtin:digits": schemas.Dataset(id="builtin:digits", name="digits", format="builtin", kind="image",
                                      num_samples=1797, num_train=1437, num_test=360, num_classes=10,
                                      input_shape=[8, 8], sha256=None, size_bytes=None, created_at=None),
    "builtin:mnist": schemas.Dataset(id="builtin:mnist", name="mnist", format="builtin", kind="image",
                                     num_samples=70000, num_train=60000, num_test=10000, num_classes=10,
                                     input_shape=[28, 28], sha256=None, size_bytes=None, created_at=None),
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": ".npz (x_train, y_train, x_test, y_test), a zip of IDX files or a zip of "
                                        "N-MNIST .bin files (Train|Test/<class>/*.bin)"},
                "name": {"type": "string", "maxLength": 256},
                "format": {"type": "string", "enum": ["npz", "idx", "nmnist"], "description": "detected when omitted"},
            },
        }}},
    }
}
ERRORS = {code: {"model": schemas.ErrorBody} for code in (400, 401, 404, 409, 413, 415, 422)}


def record(row: DatasetRow) -> schemas.Dataset:
    return schemas.Dataset(id=row.id, name=row.name, format=row.format, kind=row.kind,
                           num_samples=row.num_train + row.num_test, num_train=row.num_train, num_test=row.num_test,
                           num_classes=row.num_classes, input_shape=row.input_shape, sha256=row.sha256,
                           size_bytes=row.size_bytes, created_at=row.created_at)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.Dataset, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": schemas.Dataset, "description": "the same file was uploaded before"}, **ERRORS})
async def upload_dataset(request: Request, response: Response, user: UserDep, services: ServicesDep):
    """Upload a dataset file; 201 with its record, or 200 with the earlier record of the same file."""
    settings, store = services.settings, services.store
    try:
        upload = await receive_upload(request, settings)
    except UploadRejected as exc:
        return error_response(exc.status_code, exc.detail, [{"field": exc.field, "message": exc.detail}])
    try:
        existing = await asyncio.to_thread(store.dataset_by_sha256, user.id, upload.sha256)
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return record(existing)
        fmt = await asyncio.to_thread(inspect_archive, upload.path, settings, upload.fields.get("format"))
        staged = upload.path.with_suffix(SUFFIX[fmt])
        upload.path.rename(staged)
        upload.path = staged
        try:
            dataset = await asyncio.to_thread(load_dataset, staged)
        except DatasetError as exc:
            message = str(exc).replace(str(staged), upload.filename or "the upload")
            raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid dataset: {message}") from None
        if dataset.num_classes > settings.max_classes:
            raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                 f"invalid dataset: its labels make {dataset.num_classes} classes, more than the limit "
                                 f"of {settings.max_classes}")
        name = (upload.fields.get("name") or FilePath(upload.filename or "dataset").stem)[:256]
        key = f"datasets/{upload.sha256}{SUFFIX[fmt]}"
        if not await asyncio.to_thread(services.artifacts.exists, key):
            await asyncio.to_thread(services.artifacts.put_file, staged, key)
        row = DatasetRow(id=new_id("ds"), user_id=user.id, name=name, format=fmt, kind=dataset.kind,
                         sha256=upload.sha256, size_bytes=upload.size_bytes, num_train=len(dataset.x_train),
                         num_test=len(dataset.x_test), num_classes=dataset.num_classes,
                         input_shape=list(dataset.input_shape), storage_key=key)
        row, created = await asyncio.to_thread(store.add_dataset, row)
        if not created:
            response.status_code = status.HTTP_200_OK
        return record(row)
    except UploadRejected as exc:
        return error_response(exc.status_code, exc.detail, [{"field": exc.field, "message": exc.detail}])
    finally:
        upload.path.unlink(missing_ok=True)


@router.get("", response_model=schemas.DatasetList, responses=ERRORS)
def list_datasets(user: UserDep, services: ServicesDep) -> schemas.DatasetList:
    """The built-in datasets, then the caller's uploads (newest first)."""
    return schemas.DatasetList(items=[*BUILTINS.values(), *map(record, services.store.list_datasets(user.id))])


@router.get("/{dataset_id}", response_model=schemas.Dataset, responses=ERRORS)
def get_dataset(dataset_id: Annotated[str, Path(max_length=64)], user: UserDep, services: ServicesDep) -> schemas.Dataset:
    if dataset_id in BUILTINS:
        return BUILTINS[dataset_id]
    row = services.store.get_dataset(user.id, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    return record(row)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=ERRORS)
def delete_dataset(dataset_id: Annotated[str, Path(max_length=64)], user: UserDep, services: ServicesDep) -> Response:
    """Delete an upload (409 while a job that has not ended uses it); built-ins cannot be deleted."""
    if dataset_id in BUILTINS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "built-in datasets cannot be deleted")
    row = services.store.get_dataset(user.id, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    if services.store.dataset_in_use(dataset_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"dataset {dataset_id!r} is used by a job that has not ended")
    if services.store.delete_dataset(dataset_id):
        services.artifacts.remove(row.storage_key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
